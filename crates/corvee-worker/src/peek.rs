//! Answering peeks: read-only questions about the worker's state. The
//! handler runs on its own thread, so a slow answer never keeps the reader
//! from seeing interrupts; the supervisor has at most one peek outstanding,
//! and one that arrives while another is being answered is answered at once
//! with an error instead of queueing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};

use corvee_proto::{Peek, PeekReply, PeekResult};

use crate::connection::Connection;
use crate::session::panic_message;

/// A peek handler: the query's bytes in, the answer's bytes or an error out.
pub(crate) type PeekHandler = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync + 'static>;

#[derive(Default)]
struct Slot {
    /// The peek being answered, or waiting for the thread.
    current: Option<Peek>,
}

/// The peek thread's mailbox.
pub(crate) struct PeekAnswerer {
    slot: Mutex<Slot>,
    arrived: Condvar,
}

impl PeekAnswerer {
    /// Starts the thread that answers with `handler`.
    pub(crate) fn start(handler: PeekHandler, connection: Arc<Connection>) -> std::io::Result<Arc<PeekAnswerer>> {
        let answerer = Arc::new(PeekAnswerer { slot: Mutex::new(Slot::default()), arrived: Condvar::new() });
        let mailbox = answerer.clone();
        std::thread::Builder::new().name("corvee-peek".into()).spawn(move || loop {
            let peek = {
                let mut slot = mailbox.slot.lock().expect("peek lock");
                while slot.current.is_none() {
                    slot = mailbox.arrived.wait(slot).expect("peek lock");
                }
                slot.current.clone().expect("checked above")
            };
            let result = match catch_unwind(AssertUnwindSafe(|| handler(&peek.query))) {
                Ok(Ok(answer)) => PeekResult::Ok(answer),
                Ok(Err(error)) => PeekResult::Error(error),
                Err(panic) => PeekResult::Error(format!("the peek handler panicked: {}", panic_message(&*panic))),
            };
            // Free the slot before answering: the supervisor may send the
            // next peek the moment it reads this answer.
            mailbox.slot.lock().expect("peek lock").current = None;
            answer(&connection, peek.request_id, result);
        })?;
        Ok(answerer)
    }

    /// Hands a peek to the thread, or answers at once if one is already
    /// being answered.
    pub(crate) fn ask(&self, peek: Peek, connection: &Connection) {
        let mut slot = self.slot.lock().expect("peek lock");
        if slot.current.is_some() {
            drop(slot);
            let error = "another peek is still being answered; the protocol allows one at a time".to_owned();
            answer(connection, peek.request_id, PeekResult::Error(error));
            return;
        }
        slot.current = Some(peek);
        self.arrived.notify_one();
    }
}

/// Sends a peek reply, cutting an answer too large for a frame into an
/// error that says so.
pub(crate) fn answer(connection: &Connection, request_id: u64, result: PeekResult) {
    let result = match result {
        PeekResult::Ok(bytes) if bytes.len() > connection.max_field_bytes() => PeekResult::Error(format!(
            "the answer of {} bytes does not fit in a frame to the supervisor (at most about {} bytes)",
            bytes.len(),
            connection.max_field_bytes()
        )),
        PeekResult::Error(text) => {
            PeekResult::Error(crate::context::cut(&text, connection.max_field_bytes()).to_owned())
        }
        ok => ok,
    };
    let _ = connection.send(&PeekReply { request_id, result }, Vec::new());
}
