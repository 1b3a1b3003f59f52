//! Waiting for work without polling: a consumer sleeps until an enqueue (or
//! a release, retry, resume...) wakes it, the earliest scheduled job comes
//! due, the clock is moved (manual clocks), or its timeout passes.

use std::time::Duration;

use corvee_core::QueueName;
use tokio::time::Instant;

use super::{lock, Inner};

pub(super) async fn wait_for_available(inner: &Inner, queues: &[QueueName], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let clock_changed = inner.clock.changed();
    loop {
        // Register for wake-ups before looking, so a wake-up between the
        // look and the sleep is not lost.
        let available = inner.available.notified();
        tokio::pin!(available);
        available.as_mut().enable();
        let clock_moved = clock_changed.as_ref().map(|notify| notify.notified());
        tokio::pin!(clock_moved);
        if let Some(moved) = clock_moved.as_mut().as_pin_mut() {
            moved.enable();
        }

        let now = inner.clock.now();
        let (ready, next_due) = {
            let mut state = lock(&inner.state);
            (state.has_available(queues, now), state.next_due())
        };
        if ready {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let until_due = next_due.map(|due| Duration::from_millis(due.millis_since(now).max(1)));
        let sleep = until_due.map_or(left, |until_due| until_due.min(left));
        tokio::select! {
            _ = available.as_mut() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = async {
                match clock_moved.as_mut().as_pin_mut() {
                    Some(moved) => moved.await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}
