//! Queue settings: pause, concurrency, capacity, retry backoff, defaults for
//! new jobs, and retention of finished jobs.

use crate::ids::{Attempt, JobId};

/// Exponential backoff with jitter: the n-th failed attempt waits
/// `min(max_ms, base_ms * 2^(n-1))`, then ± `jitter_percent`.
///
/// The jitter is a hash of the job id and attempt, not a random draw: the
/// core has no randomness, replay must rebuild the same state, and jobs that
/// fail together still spread out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub base_ms: u64,
    /// The longest delay.
    pub max_ms: u64,
    /// Spread, as a percentage of the delay (0 to 100).
    pub jitter_percent: u8,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy { base_ms: 1_000, max_ms: 3_600_000, jitter_percent: 20 }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt after `attempts_used` attempts
    /// failed (at least 1).
    pub fn delay_ms(&self, attempts_used: u16, job: JobId, attempt: Attempt) -> u64 {
        let exponent = u32::from(attempts_used.max(1) - 1).min(63);
        let delay = self.base_ms.saturating_mul(1u64.checked_shl(exponent).unwrap_or(u64::MAX)).min(self.max_ms);
        let jitter = u64::from(self.jitter_percent.min(100));
        if jitter == 0 || delay == 0 {
            return delay;
        }
        // A value in [0, 2 * spread], centred on `spread`.
        let spread = delay * jitter / 100;
        let offset = mix(job.0 ^ (u64::from(attempt) << 48)) % (2 * spread + 1);
        (delay - spread + offset).min(self.max_ms.max(delay))
    }
}

/// SplitMix64's finaliser: a well-spread hash of a u64.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// How long finished jobs are kept before compaction deletes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Completed jobs are deleted this long after they finished.
    pub completed_ms: u64,
    /// Cancelled jobs, likewise.
    pub cancelled_ms: u64,
    /// Discarded jobs, likewise (kept longer: someone may want to retry them).
    pub discarded_ms: u64,
    /// At most this many completed jobs are kept per queue (oldest go first).
    pub max_completed: u64,
    /// At most this many bytes are held in memory by the queue's finished
    /// jobs (see [`QueueStats::finished_bytes`]). Beyond it, compaction
    /// deletes the oldest finished jobs, whatever their state, until 7/8 of
    /// it is left.
    pub max_finished_bytes: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            completed_ms: 24 * 3_600_000,
            cancelled_ms: 7 * 24 * 3_600_000,
            discarded_ms: 14 * 24 * 3_600_000,
            max_completed: 100_000,
            max_finished_bytes: 256 << 20,
        }
    }
}

/// A queue's settings. Queues come into being with the defaults when the
/// first job is enqueued into them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// A paused queue leases nothing; enqueueing still works.
    pub paused: bool,
    /// The most jobs of this queue running at once (`None`: no limit).
    pub concurrency: Option<u32>,
    /// The most pending (scheduled, available, retryable) plus running jobs;
    /// enqueueing beyond fails with `QueueFull` (`None`: no limit).
    pub capacity: Option<u64>,
    /// Backoff between failed attempts.
    pub retry: RetryPolicy,
    /// Attempts for jobs that do not say.
    pub default_max_attempts: u16,
    /// Lease timeout for jobs that do not say.
    pub default_timeout_ms: u32,
    /// When finished jobs are deleted.
    pub retention: Retention,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            paused: false,
            concurrency: None,
            capacity: None,
            retry: RetryPolicy::default(),
            default_max_attempts: 25,
            default_timeout_ms: 30 * 60 * 1000,
            retention: Retention::default(),
        }
    }
}

/// Counts of one queue's jobs by state, as of a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Jobs waiting for their `run_at`.
    pub scheduled: u64,
    /// Jobs ready to lease.
    pub available: u64,
    /// Jobs leased.
    pub running: u64,
    /// Jobs waiting for a retry backoff.
    pub retryable: u64,
    /// Jobs completed and not yet deleted.
    pub completed: u64,
    /// Jobs cancelled and not yet deleted.
    pub cancelled: u64,
    /// Jobs discarded and not yet deleted.
    pub discarded: u64,
    /// Bytes the finished jobs hold in memory (what
    /// `Retention::max_finished_bytes` limits): per job
    /// [`JOB_OVERHEAD_BYTES`](crate::JOB_OVERHEAD_BYTES) plus its inline
    /// payload, result, checkpoint, error history, progress message, tags
    /// and unique key.
    pub finished_bytes: u64,
    /// Jobs that became completed, cancelled and discarded (in that order)
    /// since the state was opened: changes made live, not those replayed
    /// from the journal or loaded from a snapshot. Monotonic, exact, for
    /// counters such as Prometheus's.
    pub finished_since_open: [u64; 3],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_bounded_jitter() {
        let policy = RetryPolicy { base_ms: 1000, max_ms: 60_000, jitter_percent: 10 };
        for job in 0..200 {
            for (used, nominal) in [(1u16, 1000u64), (2, 2000), (3, 4000), (7, 60_000), (30, 60_000)] {
                let delay = policy.delay_ms(used, JobId(job), 5);
                assert!(delay >= nominal - nominal / 10 && delay <= (nominal + nominal / 10).min(60_000), "{delay}");
            }
        }
        let exact = RetryPolicy { base_ms: 500, max_ms: 10_000, jitter_percent: 0 };
        assert_eq!(exact.delay_ms(3, JobId(1), 3), 2000);
        assert_eq!(exact.delay_ms(u16::MAX, JobId(1), 3), 10_000);
        // Jitter spreads jobs that fail together.
        let spread: std::collections::HashSet<u64> = (0..100).map(|job| policy.delay_ms(3, JobId(job), 3)).collect();
        assert!(spread.len() > 50);
    }
}
