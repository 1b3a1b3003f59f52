//! The daemon's event stream read on a thread, so a test can wait for the
//! event it expects (with a bound) instead of sleeping.

use std::sync::mpsc;

use corvee::client::{Client, Event};

use super::daemon::STEP_TIMEOUT;

/// The events of one subscription, from the moment it was opened.
pub struct Events {
    receiver: mpsc::Receiver<Event>,
    /// Every event received so far, for failure messages.
    pub seen: Vec<Event>,
}

impl Events {
    /// Subscribes to every event (`GET /v1/events`). Returns once the
    /// daemon answered: anything that happens after is in the stream.
    pub fn subscribe(client: &Client) -> Events {
        let stream = client.events(None).expect("GET /v1/events");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for event in stream {
                let Ok(event) = event else { return };
                if sender.send(event).is_err() {
                    return;
                }
            }
        });
        Events { receiver, seen: Vec::new() }
    }

    /// Waits for the next event `predicate` accepts, failing after
    /// [`STEP_TIMEOUT`] or if the stream ends.
    pub fn wait_for(&mut self, what: &str, mut predicate: impl FnMut(&Event) -> bool) -> Event {
        let deadline = std::time::Instant::now() + STEP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let event = match self.receiver.recv_timeout(left) {
                Ok(event) => event,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("waited {STEP_TIMEOUT:?} for {what}; seen: {:#?}", self.seen)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the event stream ended while waiting for {what}; seen: {:#?}", self.seen)
                }
            };
            self.seen.push(event.clone());
            if predicate(&event) {
                return event;
            }
        }
    }

    /// Waits for an event of an unknown type to this client (`spool`, ...)
    /// whose data `predicate` accepts; returns the data.
    pub fn wait_for_other(
        &mut self,
        what: &str,
        name: &str,
        mut predicate: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let event = self.wait_for(what, |event| match event {
            Event::Unknown { event, data } if event == name => {
                serde_json::from_str(data).map(|data| predicate(&data)).unwrap_or(false)
            }
            _ => false,
        });
        let Event::Unknown { data, .. } = event else { unreachable!() };
        serde_json::from_str(&data).expect("JSON data")
    }
}
