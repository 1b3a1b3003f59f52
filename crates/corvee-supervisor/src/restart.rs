//! Restart decisions for one worker slot: exponential backoff after
//! failures right after start, reset by a healthy run, and crash-loop
//! detection. Pure logic: the slot task feeds it how each run ended.

use std::time::Duration;

use crate::RestartPolicy;

/// How a worker's run ended, as far as restarting cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunSummary {
    /// It completed the handshake.
    pub(crate) handshake_completed: bool,
    /// How long it ran.
    pub(crate) uptime: Duration,
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RestartDecision {
    /// Wait this long before starting again.
    pub(crate) delay: Duration,
    /// Failures right after start, in a row.
    pub(crate) consecutive_failures: u32,
    /// The slot is crash-looping (report it).
    pub(crate) crash_looping: bool,
}

/// The backoff state of one slot.
#[derive(Debug)]
pub(crate) struct RestartTracker {
    policy: RestartPolicy,
    consecutive_failures: u32,
}

impl RestartTracker {
    pub(crate) fn new(policy: RestartPolicy) -> RestartTracker {
        RestartTracker { policy, consecutive_failures: 0 }
    }

    /// Records a run that ended and says when to start the next one. A run
    /// that completed the handshake and lasted `healthy_after` restarts at
    /// once; every other one doubles the delay, up to the cap.
    pub(crate) fn record(&mut self, run: RunSummary) -> RestartDecision {
        let healthy = run.handshake_completed && run.uptime >= self.policy.healthy_after;
        if healthy {
            self.consecutive_failures = 0;
            return RestartDecision { delay: Duration::ZERO, consecutive_failures: 0, crash_looping: false };
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let doublings = (self.consecutive_failures - 1).min(30);
        let delay = self.policy.initial_backoff.saturating_mul(1 << doublings).min(self.policy.max_backoff);
        RestartDecision {
            delay,
            consecutive_failures: self.consecutive_failures,
            crash_looping: self.consecutive_failures >= self.policy.crash_loop_after.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            healthy_after: Duration::from_secs(10),
            crash_loop_after: 3,
        }
    }

    const EARLY: RunSummary = RunSummary { handshake_completed: false, uptime: Duration::from_millis(5) };
    const HEALTHY: RunSummary = RunSummary { handshake_completed: true, uptime: Duration::from_secs(60) };

    #[test]
    fn early_failures_back_off_exponentially_up_to_the_cap_and_are_reported_as_crash_looping() {
        let mut tracker = RestartTracker::new(policy());
        let decisions: Vec<_> = (0..6).map(|_| tracker.record(EARLY)).collect();
        let delays: Vec<u64> = decisions.iter().map(|d| d.delay.as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        let looping: Vec<bool> = decisions.iter().map(|d| d.crash_looping).collect();
        assert_eq!(looping, [false, false, true, true, true, true]);
    }

    #[test]
    fn a_healthy_run_resets_the_backoff() {
        let mut tracker = RestartTracker::new(policy());
        tracker.record(EARLY);
        tracker.record(EARLY);
        let decision = tracker.record(HEALTHY);
        assert_eq!(decision, RestartDecision { delay: Duration::ZERO, consecutive_failures: 0, crash_looping: false });
        assert_eq!(tracker.record(EARLY).delay, Duration::from_millis(100));
    }

    #[test]
    fn a_short_run_after_a_handshake_still_counts_as_a_failure() {
        let mut tracker = RestartTracker::new(policy());
        let run = RunSummary { handshake_completed: true, uptime: Duration::from_secs(1) };
        assert_eq!(tracker.record(run).consecutive_failures, 1);
    }
}
