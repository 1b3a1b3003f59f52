//! The daemon's event stream (`GET /v1/events`, server-sent events) parsed
//! into typed [`Event`]s.

use std::io::{self, BufRead, Read};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ClientError;
use super::job::JobState;
use super::monitor::Finding;

/// The longest line of the event stream accepted (one `data:` line carries
/// one event's JSON).
const MAX_EVENT_LINE_BYTES: usize = 1024 * 1024;

/// One event of the stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A job changed state.
    Job(JobEvent),
    /// A job was deleted (retention, purge).
    JobDeleted {
        /// The job.
        id: u64,
    },
    /// A running attempt reported progress.
    Progress(ProgressEvent),
    /// A queue's settings changed (paused, resumed, configured).
    Queue {
        /// The queue.
        queue: String,
    },
    /// A worker process started, became ready, exited, or its pool is
    /// crash-looping.
    Worker(WorkerEvent),
    /// The monitor found something.
    Monitor(Finding),
    /// This client fell behind and missed `missed` events: re-read what it
    /// shows.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
    /// An event type this client does not know, kept as it came.
    Unknown {
        /// The `event:` field.
        event: String,
        /// The `data:` field.
        data: String,
    },
}

/// A job's new state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job.
    pub id: u64,
    /// Its queue.
    pub queue: String,
    /// Its new state.
    #[serde(with = "super::job::state_name")]
    pub state: JobState,
    /// The running (or last) attempt, if any.
    #[serde(default)]
    pub execution: Option<String>,
}

/// Progress an attempt reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// The job.
    pub id: u64,
    /// The attempt that reported it.
    #[serde(default)]
    pub execution: Option<String>,
    /// Units done.
    pub done: u64,
    /// Units in all, if known.
    #[serde(default)]
    pub total: Option<u64>,
    /// A short status line.
    #[serde(default)]
    pub message: Option<String>,
}

/// Something that happened to a worker process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerEvent {
    /// The pool.
    pub pool: String,
    /// The worker's id within the daemon (kept as JSON: the API does not
    /// fix its type).
    #[serde(default)]
    pub worker: Value,
    /// `started`, `ready`, `exited` or `crash_looping`.
    pub event: String,
    /// Details in words (exit status, ...).
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: u64,
}

#[derive(Deserialize)]
struct QueueOnly {
    queue: String,
}

#[derive(Deserialize)]
struct Missed {
    missed: u64,
}

impl Event {
    /// Parses one event from its `event:` type and `data:` JSON.
    pub fn parse(event: &str, data: &str) -> Result<Event, serde_json::Error> {
        Ok(match event {
            "job" => Event::Job(serde_json::from_str(data)?),
            "job_deleted" => Event::JobDeleted { id: serde_json::from_str::<IdOnly>(data)?.id },
            "progress" => Event::Progress(serde_json::from_str(data)?),
            "queue" => Event::Queue { queue: serde_json::from_str::<QueueOnly>(data)?.queue },
            "worker" => Event::Worker(serde_json::from_str(data)?),
            "monitor" => Event::Monitor(serde_json::from_str(data)?),
            "lagged" => Event::Lagged { missed: serde_json::from_str::<Missed>(data)?.missed },
            _ => Event::Unknown { event: event.to_string(), data: data.to_string() },
        })
    }

    /// The job this event is about, if it is about one.
    pub fn job_id(&self) -> Option<u64> {
        match self {
            Event::Job(event) => Some(event.id),
            Event::JobDeleted { id } => Some(*id),
            Event::Progress(event) => Some(event.id),
            Event::Monitor(finding) => finding.job,
            _ => None,
        }
    }
}

/// One server-sent event before its data is parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawEvent {
    pub(crate) event: String,
    pub(crate) data: String,
}

/// Reads server-sent events from `reader`: `event:` names the type
/// (`message` if absent), `data:` lines are joined with newlines, `id:` and
/// `retry:` and comments (`:` lines, the daemon's keep-alives) are ignored,
/// and an empty line dispatches. `None` at the end of the stream.
pub(crate) fn read_raw_event(reader: &mut impl BufRead) -> io::Result<Option<RawEvent>> {
    let mut event = RawEvent::default();
    let mut has_data = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = Read::take(&mut *reader, MAX_EVENT_LINE_BYTES as u64 + 1).read_until(b'\n', &mut line)?;
        if read == 0 {
            // The stream ended. An event without its closing empty line is
            // incomplete and, as the SSE rules say, not dispatched.
            return Ok(None);
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_EVENT_LINE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("an event-stream line is longer than {MAX_EVENT_LINE_BYTES} bytes"),
            ));
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        let line = std::str::from_utf8(&line)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "an event-stream line is not UTF-8"))?;
        if line.is_empty() {
            if has_data {
                if event.event.is_empty() {
                    event.event = "message".to_string();
                }
                return Ok(Some(event));
            }
            event = RawEvent::default();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event.event = value.to_string(),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
}

/// The event stream: an iterator of events that ends when the daemon closes
/// the stream. Reading blocks until the next event; run it on its own thread
/// to do other work meanwhile.
pub struct EventStream {
    reader: Box<dyn BufRead + Send>,
    request: String,
    ended: bool,
}

impl EventStream {
    pub(crate) fn new(reader: Box<dyn BufRead + Send>, request: String) -> EventStream {
        EventStream { reader, request, ended: false }
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("EventStream").field("request", &self.request).field("ended", &self.ended).finish()
    }
}

impl Iterator for EventStream {
    type Item = Result<Event, ClientError>;

    fn next(&mut self) -> Option<Result<Event, ClientError>> {
        if self.ended {
            return None;
        }
        let outcome = match read_raw_event(&mut self.reader) {
            Ok(Some(raw)) => Event::parse(&raw.event, &raw.data)
                .map_err(|source| ClientError::Decode { request: self.request.clone(), source }),
            Ok(None) => {
                self.ended = true;
                return None;
            }
            Err(source) if source.kind() == io::ErrorKind::InvalidData => {
                Err(ClientError::Protocol { request: self.request.clone(), detail: source.to_string() })
            }
            Err(source) => Err(ClientError::Io { request: self.request.clone(), source }),
        };
        // A bad event's JSON leaves the stream's framing intact, so the
        // stream goes on after it; a broken connection ends it.
        if matches!(outcome, Err(ClientError::Io { .. } | ClientError::Protocol { .. })) {
            self.ended = true;
        }
        Some(outcome)
    }
}
