//! What enqueueing sends (`POST /v1/jobs`, `POST /v1/commands`, and the
//! spool files of `add --offline`) and what it answers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize, Serializer};

/// A job to enqueue. Only `kind` is required; everything else left `None`
/// takes the daemon's default.
///
/// ```
/// use corvee::client::JobRequest;
///
/// let request = JobRequest::new("resize").on_queue("images").with_text_payload("a.png");
/// let json = serde_json::to_string(&request).unwrap();
/// assert_eq!(json, r#"{"queue":"images","kind":"resize","payload":"a.png"}"#);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobRequest {
    /// The queue (`default` if `None`).
    pub queue: Option<String>,
    /// What the worker dispatches on.
    pub kind: String,
    /// The payload.
    pub payload: Payload,
    /// Lower runs first (the daemon's default is 1024).
    pub priority: Option<u32>,
    /// Run no sooner than this long after the enqueue.
    pub delay_ms: Option<u64>,
    /// Run no sooner than this time (RFC 3339). At most one of `delay_ms`
    /// and `run_at`.
    pub run_at: Option<String>,
    /// Attempts allowed.
    pub max_attempts: Option<u32>,
    /// Each attempt's time limit.
    pub timeout_ms: Option<u64>,
    /// At most one job with this key (see [`Unique`]).
    pub unique: Option<Unique>,
    /// Free-form labels.
    pub tags: Vec<String>,
}

/// A job's payload, and how it travels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Payload {
    /// No payload.
    #[default]
    Empty,
    /// UTF-8 text, sent as `payload`.
    Text(String),
    /// Bytes, sent as `payload_base64`.
    Bytes(Vec<u8>),
    /// A file the **daemon** reads (`payload_file`): the path must be
    /// readable by the daemon's user, on the daemon's machine.
    DaemonFile(PathBuf),
}

impl Payload {
    /// `Text` if `bytes` are UTF-8 (smaller on the wire and readable in a
    /// spool file), else `Bytes`; `Empty` for no bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Payload {
        if bytes.is_empty() {
            return Payload::Empty;
        }
        match String::from_utf8(bytes) {
            Ok(text) => Payload::Text(text),
            Err(error) => Payload::Bytes(error.into_bytes()),
        }
    }
}

/// Uniqueness: while a job with `key` exists in the queue (or, with a
/// window, was enqueued less than `window_ms` ago), enqueueing another with
/// the same key returns the existing job's id with `duplicate: true`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unique {
    /// The key, e.g. `invoice:7`.
    pub key: String,
    /// How long the key stays taken; `None`: as long as the job exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
}

impl JobRequest {
    /// A job of this kind on the default queue with an empty payload.
    pub fn new(kind: impl Into<String>) -> JobRequest {
        JobRequest { kind: kind.into(), ..JobRequest::default() }
    }

    /// The same job on `queue`.
    pub fn on_queue(mut self, queue: impl Into<String>) -> JobRequest {
        self.queue = Some(queue.into());
        self
    }

    /// The same job with a text payload.
    pub fn with_text_payload(mut self, text: impl Into<String>) -> JobRequest {
        self.payload = Payload::Text(text.into());
        self
    }

    /// The same job with a payload of bytes.
    pub fn with_payload_bytes(mut self, bytes: Vec<u8>) -> JobRequest {
        self.payload = Payload::from_bytes(bytes);
        self
    }
}

/// The JSON shape of a [`JobRequest`], as `docs/http-api.md` writes it.
#[derive(Serialize)]
struct JobRequestJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<&'a str>,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_file: Option<&'a PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unique: Option<&'a Unique>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
}

impl Serialize for JobRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (payload, payload_base64, payload_file) = match &self.payload {
            Payload::Empty => (None, None, None),
            Payload::Text(text) => (Some(text.as_str()), None, None),
            Payload::Bytes(bytes) => (None, Some(base64::engine::general_purpose::STANDARD.encode(bytes)), None),
            Payload::DaemonFile(path) => (None, None, Some(path)),
        };
        JobRequestJson {
            queue: self.queue.as_deref(),
            kind: &self.kind,
            payload,
            payload_base64,
            payload_file,
            priority: self.priority,
            delay_ms: self.delay_ms,
            run_at: self.run_at.as_deref(),
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            unique: self.unique.as_ref(),
            tags: &self.tags,
        }
        .serialize(serializer)
    }
}

/// The body of a batch enqueue: `{"jobs": [...]}`.
#[derive(Serialize)]
pub(crate) struct JobBatchJson<'a> {
    pub(crate) jobs: &'a [JobRequest],
}

/// A command job (`POST /v1/commands`): an argv run as its own process,
/// never through a shell.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CommandRequest {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Environment variables set for the command.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// The queue (the daemon's command queue, `commands`, if `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Lower runs first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Attempts allowed (the daemon's default for commands is 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Each attempt's time limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl CommandRequest {
    /// A command job running `argv` with the daemon's defaults.
    pub fn new(argv: Vec<String>) -> CommandRequest {
        CommandRequest { argv, ..CommandRequest::default() }
    }
}

/// One job of an enqueue's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnqueuedJob {
    /// The new job's id, or, if `duplicate`, the existing job's.
    pub id: u64,
    /// A job with the same unique key exists; nothing new was enqueued.
    #[serde(default)]
    pub duplicate: bool,
}

/// The answer to an enqueue: `{"jobs": [...]}`, in request order.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct EnqueueResponse {
    pub(crate) jobs: Vec<EnqueuedJob>,
}
