//! [`JobContext`]: everything a handler knows about its attempt and every
//! way it talks back while it runs — progress, checkpoints, log lines — plus
//! the interruption token it checks at its safe points.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use corvee_proto::{Checkpoint, Log, LogLevel, PayloadError, Progress, ProgressState};

use crate::connection::{Connection, SendError};
use crate::interruption::Interruption;
use crate::{JobError, JobPayload, PayloadBytes, PayloadReader};

/// The latest state a handler reported, for its `interrupted` reply.
#[derive(Debug, Default)]
pub(crate) struct Reported {
    pub(crate) checkpoint: Option<Vec<u8>>,
    pub(crate) progress: Option<ProgressState>,
}

/// One attempt of one job, as its handler sees it. Methods take `&self`, so
/// a handler may hand the context to threads of its own (it is `Sync`).
#[derive(Debug)]
pub struct JobContext {
    pub(crate) job_id: u64,
    pub(crate) attempt: u32,
    pub(crate) queue: String,
    pub(crate) kind: String,
    pub(crate) deadline: Option<SystemTime>,
    pub(crate) payload: JobPayload,
    pub(crate) previous_checkpoint: Option<Vec<u8>>,
    pub(crate) previous_progress: Option<ProgressState>,
    pub(crate) reported: Mutex<Reported>,
    pub(crate) interruption: Arc<Interruption>,
    pub(crate) connection: Arc<Connection>,
}

impl JobContext {
    /// The job's id in the store.
    pub fn job_id(&self) -> u64 {
        self.job_id
    }

    /// This attempt's number, from 1 (the fencing token).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The queue the job came from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The job's kind (what chose this handler).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// When the supervisor starts interrupting this attempt; `None`: no
    /// deadline.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.deadline
    }

    /// The job's input, inline or as a file descriptor.
    pub fn payload(&self) -> &JobPayload {
        &self.payload
    }

    /// The input's bytes the cheapest way: borrowed, mapped (sealed memfd)
    /// or read (data file).
    pub fn payload_bytes(&self) -> Result<PayloadBytes<'_>, PayloadError> {
        self.payload.bytes()
    }

    /// A `Read + Seek` over the input.
    pub fn payload_reader(&self) -> PayloadReader<'_> {
        self.payload.reader()
    }

    /// The checkpoint an earlier attempt saved: resume from it. `None` on a
    /// first attempt (or when no attempt checkpointed).
    pub fn last_checkpoint(&self) -> Option<&[u8]> {
        self.previous_checkpoint.as_deref()
    }

    /// The progress an earlier attempt reported.
    pub fn previous_progress(&self) -> Option<&ProgressState> {
        self.previous_progress.as_ref()
    }

    /// Reports how far the job has got: `done` of `total` units (bytes,
    /// rows, steps — the handler's choice), with an optional status line.
    /// Advisory: a lost connection or an over-long message is not the
    /// handler's problem (the message is cut to fit).
    pub fn progress(&self, done: u64, total: Option<u64>, message: Option<&str>) {
        let message = message.map(|text| cut(text, self.connection.max_field_bytes()).to_owned());
        let state = ProgressState { done, total, message: message.clone() };
        self.reported.lock().expect("reported lock").progress = Some(state);
        let frame = Progress { job_id: self.job_id, attempt: self.attempt, done, total, message };
        let _ = self.connection.send(&frame, Vec::new());
    }

    /// Saves state a later attempt can resume from (it gets it from
    /// [`last_checkpoint`](JobContext::last_checkpoint)), and remembers it
    /// for the `interrupted` reply. Fails when the checkpoint cannot fit in
    /// a frame to the supervisor (permanent: the same state will not fit
    /// next time either), or when the supervisor is gone (an interruption:
    /// stop, nobody will take the result).
    pub fn checkpoint(&self, state: &[u8]) -> Result<(), JobError> {
        self.reported.lock().expect("reported lock").checkpoint = Some(state.to_vec());
        if !self.connection.capabilities.checkpoints {
            return Ok(());
        }
        let frame = Checkpoint { job_id: self.job_id, attempt: self.attempt, checkpoint: state.to_vec() };
        match self.connection.send(&frame, Vec::new()) {
            Ok(()) => Ok(()),
            Err(SendError::Encode(error)) => Err(JobError::permanent(format!(
                "a checkpoint of {} bytes could not be sent: {error}; keep checkpoints small \
                 (a position, not the data)",
                state.len()
            ))),
            Err(SendError::Closed) => Err(self.gone()),
        }
    }

    /// A structured log line about this job (the supervisor stores it with
    /// the job's logs). Lines printed to stdout or stderr are kept too, but
    /// only a `log` line names its job when several run at once.
    pub fn log(&self, level: LogLevel, text: &str) {
        let text = cut(text.trim_end_matches('\n'), self.connection.max_field_bytes()).to_owned();
        let frame = Log { job_id: Some(self.job_id), attempt: Some(self.attempt), level, text };
        let _ = self.connection.send(&frame, Vec::new());
    }

    /// Whether the supervisor asked this attempt to stop (a cancel, its
    /// deadline, a shutdown) or went away.
    pub fn is_interrupted(&self) -> bool {
        self.interruption.is_set()
    }

    /// Why the attempt was interrupted, if it was.
    pub fn interruption_reason(&self) -> Option<String> {
        self.interruption.reason()
    }

    /// A safe point: `Err(JobError::Interrupted)` if the attempt was asked
    /// to stop, to be returned with `?`. Call it where everything done so
    /// far is consistent and recorded (checkpointed).
    pub fn check_interrupted(&self) -> Result<(), JobError> {
        match self.interruption.is_set() {
            false => Ok(()),
            true => Err(self.interrupted()),
        }
    }

    /// Waits for `duration` unless interrupted first: a pause (or a wait
    /// for an external event to be polled) that ends at once on an
    /// interrupt, with `Err(JobError::Interrupted)`.
    pub fn sleep(&self, duration: Duration) -> Result<(), JobError> {
        match self.interruption.wait(duration) {
            false => Ok(()),
            true => Err(self.interrupted()),
        }
    }

    fn interrupted(&self) -> JobError {
        JobError::Interrupted { reason: self.interruption.reason().unwrap_or_else(|| "interrupted".to_owned()) }
    }

    fn gone(&self) -> JobError {
        self.interruption.interrupt("the supervisor is gone");
        self.interrupted()
    }

    /// The checkpoint and progress to send with `interrupted`: the latest
    /// this attempt reported, else what the previous attempt left.
    pub(crate) fn latest_reported(&self) -> (Option<Vec<u8>>, Option<ProgressState>) {
        let reported = self.reported.lock().expect("reported lock");
        let checkpoint = reported.checkpoint.clone().or_else(|| self.previous_checkpoint.clone());
        let progress = reported.progress.clone().or_else(|| self.previous_progress.clone());
        (checkpoint, progress)
    }
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a
/// character boundary.
pub(crate) fn cut(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
