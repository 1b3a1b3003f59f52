//! The worker's life after the handshake: the reader loop on the calling
//! thread (jobs, interrupts, peeks, shutdown, EOF), each job run on a job
//! thread, and exactly one terminal reply per job.
//!
//! Ordering that matters: a job's terminal reply is written and the job
//! leaves the running set in one step under the session lock — the
//! supervisor sends the next job the moment it reads the reply — and
//! `goodbye` is written under that lock once the set is empty, so it never
//! overtakes a reply.

use std::any::Any;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use corvee_proto::{
    Complete, EncodeError, Fail, FrameDecoder, Goodbye, Interrupted, Job, Message, Payload, ProgressState, Received,
    Snooze,
};
use rustix::fs::FileType;

use crate::connection::{Connection, SendError};
use crate::context::{cut, JobContext, Reported};
use crate::interruption::Interruption;
use crate::job_threads::JobThreads;
use crate::peek::{answer, PeekAnswerer};
use crate::worker::Handler;
use crate::{JobError, JobPayload, PayloadFd, WorkerError, WorkerExit};

/// An attempt between its `job` frame and its terminal reply.
struct Running {
    attempt: u32,
    interruption: Arc<Interruption>,
}

#[derive(Default)]
struct SessionState {
    running: HashMap<u64, Running>,
    /// Why the supervisor asked the worker to stop, once it did.
    shutdown_reason: Option<String>,
    goodbye_sent: bool,
}

/// A terminal reply ready to send: the frame and its fds.
enum Reply {
    Complete(Complete, Vec<OwnedFd>),
    Fail(Fail),
    Snooze(Snooze),
    Interrupted(Interrupted),
}

/// How a job ended.
enum Terminal {
    Complete(Option<Vec<u8>>),
    Fail { error: String, retryable: bool },
    Snooze { delay: Duration },
    Interrupted { checkpoint: Option<Vec<u8>>, progress: Option<ProgressState> },
}

pub(crate) struct Session {
    pub(crate) socket: Arc<OwnedFd>,
    pub(crate) connection: Arc<Connection>,
    pub(crate) handlers: HashMap<String, Handler>,
    pub(crate) window: usize,
    pub(crate) threads: Arc<JobThreads>,
    pub(crate) peek: Option<Arc<PeekAnswerer>>,
    state: Mutex<SessionState>,
}

impl Session {
    pub(crate) fn new(
        socket: Arc<OwnedFd>,
        connection: Arc<Connection>,
        handlers: HashMap<String, Handler>,
        window: usize,
        peek: Option<Arc<PeekAnswerer>>,
    ) -> Session {
        Session {
            socket,
            connection,
            handlers,
            window,
            threads: JobThreads::new(window),
            peek,
            state: Mutex::new(SessionState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().expect("session lock")
    }

    /// Reads and handles frames until the worker said goodbye, the
    /// supervisor went away, or the stream broke.
    pub(crate) fn serve(self: &Arc<Self>, decoder: &mut FrameDecoder) -> Result<WorkerExit, WorkerError> {
        let result = self.read_loop(decoder);
        if !matches!(result, Ok(WorkerExit::Shutdown)) {
            // Nobody will take what the running jobs produce: stop them.
            self.abandon("the supervisor is gone");
        }
        result
    }

    fn read_loop(self: &Arc<Self>, decoder: &mut FrameDecoder) -> Result<WorkerExit, WorkerError> {
        loop {
            while let Some(received) = decoder.next_message()? {
                self.handle(received)?;
            }
            if self.lock().goodbye_sent {
                return Ok(WorkerExit::Shutdown);
            }
            match decoder.recv_from(&*self.socket) {
                // EOF, or the read side shut down after goodbye to wake us.
                Ok(0) => {
                    if self.lock().goodbye_sent {
                        return Ok(WorkerExit::Shutdown);
                    }
                    if let Err(error) = decoder.finish() {
                        eprintln!("corvee worker: the supervisor's stream ended badly: {error}");
                    }
                    return Ok(WorkerExit::SupervisorGone);
                }
                Ok(_) => {}
                Err(_) if self.lock().goodbye_sent => return Ok(WorkerExit::Shutdown),
                // A supervisor that dies with frames of ours still unread
                // resets the connection instead of closing it: gone all the
                // same.
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Ok(WorkerExit::SupervisorGone);
                }
                Err(source) => return Err(WorkerError::Io { operation: "reading from", source }),
            }
        }
    }

    fn handle(self: &Arc<Self>, mut received: Received) -> Result<(), WorkerError> {
        let payload_fd = match &received.message {
            Message::Job(Job { payload: Payload::Fd { index, .. }, .. }) => received.take_fd(*index),
            _ => None,
        };
        match received.message {
            Message::Job(job) => self.start_job(job, payload_fd),
            Message::Interrupt(interrupt) => {
                let state = self.lock();
                // An interrupt for an attempt not running here is ignored.
                if let Some(running) = state.running.get(&interrupt.job_id) {
                    if running.attempt == interrupt.attempt {
                        running.interruption.interrupt(&interrupt.reason);
                    }
                }
            }
            Message::Peek(peek) => match &self.peek {
                Some(answerer) => answerer.ask(peek, &self.connection),
                None => answer(
                    &self.connection,
                    peek.request_id,
                    corvee_proto::PeekResult::Error("this worker has no peek handler".to_owned()),
                ),
            },
            Message::Shutdown(shutdown) => {
                let mut state = self.lock();
                state.shutdown_reason = Some(shutdown.reason);
                self.goodbye_if_idle(&mut state);
            }
            other => {
                return Err(WorkerError::UnexpectedMessage {
                    expected: "job, interrupt, peek or shutdown",
                    found: other.message_type().name().to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Registers the attempt and hands it to a job thread.
    fn start_job(self: &Arc<Self>, job: Job, fd: Option<OwnedFd>) {
        let interruption = Arc::new(Interruption::default());
        let refused = {
            let mut state = self.lock();
            if state.running.contains_key(&job.job_id) {
                Some(format!("job {} is already running at this worker; the supervisor broke the protocol", job.job_id))
            } else if state.running.len() >= self.window {
                Some(format!(
                    "the supervisor sent more than the window of {} jobs; this one was not started",
                    self.window
                ))
            } else {
                state.running.insert(job.job_id, Running { attempt: job.attempt, interruption: interruption.clone() });
                None
            }
        };
        if let Some(error) = refused {
            eprintln!("corvee worker: {error}");
            let reply = self.prepare_reply(job.job_id, job.attempt, Terminal::Fail { error, retryable: true });
            self.send_reply(reply);
            return;
        }
        let session = self.clone();
        let (job_id, attempt) = (job.job_id, job.attempt);
        let started = self.threads.execute(move || {
            let terminal = session.run_job(job, fd, interruption);
            session.reply_and_finish(job_id, attempt, terminal);
        });
        if let Err(error) = started {
            let error = format!("no thread could be started for the job: {error}");
            self.reply_and_finish(job_id, attempt, Terminal::Fail { error, retryable: true });
        }
    }

    /// Runs the attempt's handler on this (job) thread.
    fn run_job(&self, job: Job, fd: Option<OwnedFd>, interruption: Arc<Interruption>) -> Terminal {
        let Some(handler) = self.handlers.get(&job.kind) else {
            return Terminal::Fail {
                error: format!("this worker has no handler for kind {:?}", job.kind),
                retryable: false,
            };
        };
        let payload = match (job.payload, fd) {
            (Payload::Inline(bytes), _) => JobPayload::Inline(bytes),
            (Payload::Fd { length, .. }, Some(fd)) => match check_payload_fd(&fd, length) {
                Ok(()) => JobPayload::Fd(PayloadFd::new(File::from(fd), length, self.connection.max_payload_bytes)),
                Err(error) => return Terminal::Fail { error, retryable: false },
            },
            (Payload::Fd { .. }, None) => {
                return Terminal::Fail { error: "the job's payload fd is missing".to_owned(), retryable: false };
            }
        };
        let context = JobContext {
            job_id: job.job_id,
            attempt: job.attempt,
            queue: job.queue,
            kind: job.kind,
            deadline: job.deadline_unix_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
            payload,
            previous_checkpoint: job.checkpoint,
            previous_progress: job.progress,
            reported: Mutex::new(Reported::default()),
            interruption,
            connection: self.connection.clone(),
        };
        match catch_unwind(AssertUnwindSafe(|| handler(&context))) {
            Ok(Ok(result)) => Terminal::Complete(result),
            Ok(Err(JobError::Failed { message, retryable })) => Terminal::Fail { error: message, retryable },
            Ok(Err(JobError::Snoozed { delay })) => Terminal::Snooze { delay },
            Ok(Err(JobError::Interrupted { .. })) => {
                let (checkpoint, progress) = context.latest_reported();
                Terminal::Interrupted { checkpoint, progress }
            }
            Err(panic) => Terminal::Fail {
                error: format!("the handler for kind {:?} panicked: {}", context.kind, panic_message(&*panic)),
                retryable: true,
            },
        }
    }

    /// Turns how the job ended into its reply frame, outside any lock: a
    /// large result is copied into a sealed memfd here.
    fn prepare_reply(&self, job_id: u64, attempt: u32, terminal: Terminal) -> Reply {
        let connection = &self.connection;
        match terminal {
            Terminal::Complete(None) => Reply::Complete(Complete { job_id, attempt, result: None }, Vec::new()),
            Terminal::Complete(Some(bytes)) => {
                let over_threshold = bytes.len() as u64 > connection.payload_fd_threshold_bytes;
                if !(connection.capabilities.fd_payloads && over_threshold) {
                    let result = Some(Payload::Inline(bytes));
                    return Reply::Complete(Complete { job_id, attempt, result }, Vec::new());
                }
                match corvee_proto::sealed_memfd(&format!("corvee-result-{job_id}"), &bytes) {
                    Ok(memfd) => {
                        let result = Some(Payload::Fd { index: 0, length: bytes.len() as u64 });
                        Reply::Complete(Complete { job_id, attempt, result }, vec![memfd])
                    }
                    Err(error) => {
                        let error =
                            format!("a memfd for the result of {} bytes could not be made: {error}", bytes.len());
                        Reply::Fail(Fail { job_id, attempt, error, retryable: true })
                    }
                }
            }
            Terminal::Fail { error, retryable } => {
                let error = cut(&error, connection.max_field_bytes()).to_owned();
                Reply::Fail(Fail { job_id, attempt, error, retryable })
            }
            Terminal::Snooze { delay } => {
                let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                Reply::Snooze(Snooze { job_id, attempt, delay_ms })
            }
            Terminal::Interrupted { checkpoint, progress } => {
                Reply::Interrupted(Interrupted { job_id, attempt, checkpoint, progress })
            }
        }
    }

    /// Sends the attempt's one terminal reply. A reply that cannot be
    /// encoded is replaced by one that can, so no attempt is left without.
    fn send_reply(&self, reply: Reply) {
        let connection = &self.connection;
        let (job_id, attempt, sent) = match reply {
            Reply::Complete(complete, fds) => {
                let (job_id, attempt) = (complete.job_id, complete.attempt);
                let length = complete.result.as_ref().map_or(0, Payload::len);
                let sent = match connection.send(&complete, fds) {
                    Err(SendError::Encode(EncodeError::FrameTooLarge { max_frame_bytes, .. })) => {
                        let error = format!(
                            "the result of {length} bytes does not fit the supervisor's maximum frame of \
                             {max_frame_bytes} bytes, and this connection does not pass fds"
                        );
                        connection.send(&Fail { job_id, attempt, error, retryable: false }, Vec::new())
                    }
                    other => other,
                };
                (job_id, attempt, sent)
            }
            Reply::Fail(fail) => (fail.job_id, fail.attempt, connection.send(&fail, Vec::new())),
            Reply::Snooze(snooze) => (snooze.job_id, snooze.attempt, connection.send(&snooze, Vec::new())),
            Reply::Interrupted(interrupted) => {
                let (job_id, attempt) = (interrupted.job_id, interrupted.attempt);
                let sent = match connection.send(&interrupted, Vec::new()) {
                    // A checkpoint too large for a frame was refused when the
                    // handler sent it; the last one sent stands.
                    Err(SendError::Encode(_)) => {
                        connection.send(&Interrupted { job_id, attempt, checkpoint: None, progress: None }, Vec::new())
                    }
                    other => other,
                };
                (job_id, attempt, sent)
            }
        };
        if let Err(SendError::Encode(error)) = sent {
            let error = format!("the reply could not be encoded: {error}");
            eprintln!("corvee worker: job {job_id} attempt {attempt}: {error}");
            let _ = connection.send(&Fail { job_id, attempt, error, retryable: false }, Vec::new());
        }
    }

    /// Sends the attempt's reply and takes it out of the running set in one
    /// step, under the session lock: the supervisor sends the next job as
    /// soon as it reads the reply, and that job must find the window room
    /// free; and a goodbye, sent under the same lock once the set is empty,
    /// never overtakes a reply.
    fn reply_and_finish(&self, job_id: u64, attempt: u32, terminal: Terminal) {
        let reply = self.prepare_reply(job_id, attempt, terminal);
        let mut state = self.lock();
        self.send_reply(reply);
        if state.running.get(&job_id).is_some_and(|running| running.attempt == attempt) {
            state.running.remove(&job_id);
        }
        self.goodbye_if_idle(&mut state);
    }

    fn goodbye_if_idle(&self, state: &mut SessionState) {
        if state.goodbye_sent || !state.running.is_empty() {
            return;
        }
        let Some(reason) = &state.shutdown_reason else { return };
        state.goodbye_sent = true;
        let goodbye = Goodbye { reason: Some(format!("shutdown requested ({reason})")) };
        let _ = self.connection.send_last(&goodbye);
        // Wake the reader, which may be blocked in recvmsg: it sees EOF and
        // returns. (Shutting down our read side is invisible to frames
        // already written.)
        let _ = rustix::net::shutdown(&*self.socket, rustix::net::Shutdown::Read);
    }

    /// The connection is over without a goodbye: interrupt every running
    /// attempt and stop sending.
    fn abandon(&self, reason: &str) {
        self.connection.close();
        for running in self.lock().running.values() {
            running.interruption.interrupt(reason);
        }
    }
}

/// Checks a payload fd before a handler touches it: a regular file (a memfd
/// is one) holding at least `length` bytes. A pipe or socket could block
/// the handler forever.
fn check_payload_fd(fd: &OwnedFd, length: u64) -> Result<(), String> {
    let stat = rustix::fs::fstat(fd).map_err(|errno| format!("fstat of the payload fd failed: {errno}"))?;
    let file_type = FileType::from_raw_mode(stat.st_mode);
    if file_type != FileType::RegularFile {
        return Err(format!("the payload fd is not a regular file or memfd but a {file_type:?}"));
    }
    let size = stat.st_size as u64;
    if size < length {
        return Err(format!("the payload fd holds {size} bytes but the job announces {length}"));
    }
    Ok(())
}

/// A panic's message, when it has one.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}
