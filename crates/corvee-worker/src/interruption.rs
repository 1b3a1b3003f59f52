//! The interruption token of one attempt: set by the reader thread when an
//! `interrupt` arrives (or when the supervisor goes away), read by the
//! handler at its safe points, and waited on by interruptible sleeps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(crate) struct Interruption {
    /// Checked on every safe point without taking the lock.
    flag: AtomicBool,
    reason: Mutex<Option<String>>,
    changed: Condvar,
}

impl Interruption {
    /// Asks the attempt to stop. The first reason stands.
    pub(crate) fn interrupt(&self, reason: &str) {
        let mut current = self.reason.lock().expect("interruption lock");
        if current.is_none() {
            *current = Some(reason.to_owned());
        }
        self.flag.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    pub(crate) fn reason(&self) -> Option<String> {
        self.reason.lock().expect("interruption lock").clone()
    }

    /// Waits until interrupted or until `timeout` has passed; true if
    /// interrupted.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut reason = self.reason.lock().expect("interruption lock");
        while reason.is_none() {
            let remaining = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if remaining.is_zero() {
                return false;
            }
            reason = self.changed.wait_timeout(reason, remaining).expect("interruption lock").0;
        }
        true
    }
}
