//! A blocking client for the corvee daemon: HTTP/1.1 with JSON over the Unix
//! socket `<dir>/corvee.sock` (or TCP with a bearer token), one typed method
//! per route of `docs/http-api.md`.
//!
//! Each call opens its own connection (`Connection: close`): on a Unix
//! socket that costs tens of microseconds, keeps the client free of
//! connection-pool state, and lets a [`Client`] be shared by threads
//! (it is `Clone + Send + Sync`). Streams ([`Client::follow_logs`],
//! [`Client::events`]) hold their connection until dropped.

mod enqueue;
mod error;
mod events;
mod http;
mod job;
mod logs;
mod monitor;
mod queue;

use std::io::{BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use enqueue::{CommandRequest, EnqueuedJob, JobRequest, Payload, Unique};
pub use error::{ApiError, ClientError};
pub use events::{Event, EventStream, JobEvent, ProgressEvent, WorkerEvent};
pub use job::{AttemptError, Job, JobPage, JobState, ListFilter, Progress};
pub use logs::{LogChunk, LogFollow};
pub use monitor::{Finding, MonitorReport};
pub use queue::{QueueList, QueuePaused, QueuePurged, QueueStats};

use enqueue::{EnqueueResponse, JobBatchJson};
use http::{BodyReader, Request, ResponseHead, Stream};

/// The longest answer read into memory (JSON, payloads, results). Payloads
/// are at most 64 MiB by default; this leaves room for a daemon configured
/// higher without letting a confused peer exhaust memory.
pub const MAX_RESPONSE_BYTES: u64 = 1 << 30;

/// How long a call waits for the daemon's answer by default. Long-polls
/// ([`Client::wait`]) add their own wait to it; streams have no limit.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest one `GET /v1/jobs/{id}/wait` may wait, per the API.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Where the daemon listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The Unix socket of a data directory (no token; the file mode is the
    /// access control).
    Unix {
        /// The socket's path, normally `<dir>/corvee.sock`.
        socket: PathBuf,
    },
    /// TCP, `host:port`.
    Tcp {
        /// `host:port`.
        address: String,
    },
}

/// A bearer token, kept out of `Debug` output and error messages.
#[derive(Clone, PartialEq, Eq)]
struct BearerToken(String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("<redacted>")
    }
}

/// A client for one daemon. Cheap to clone; every method is one request on
/// its own connection.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    authorization: Option<BearerToken>,
    request_timeout: Option<Duration>,
}

/// `GET /v1/health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` when the daemon serves.
    pub status: String,
    /// The daemon's version.
    #[serde(default)]
    pub version: String,
    /// Its data directory.
    #[serde(default)]
    pub dir: String,
    /// How long it has been running.
    #[serde(default)]
    pub uptime_ms: u64,
    /// Fields this client does not know (e.g. `node`).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// What a cancel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The job was not running and is now `cancelled`.
    Cancelled,
    /// The job is running: its attempt was asked to stop at a safe point,
    /// and the job ends `cancelled` when it has.
    CancelRequested,
}

/// The answer to a cancel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    /// What happened.
    pub outcome: CancelOutcome,
    /// The execution that was interrupted, for `cancel_requested`.
    #[serde(default)]
    pub execution: Option<String>,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u64,
}

#[derive(Serialize)]
struct MoveBody<'a> {
    queue: &'a str,
}

/// Which stored bytes of a job to fetch.
#[derive(Clone, Copy, Debug)]
enum JobBytes {
    Payload,
    Checkpoint,
    Result,
}

impl JobBytes {
    fn route(self) -> &'static str {
        match self {
            JobBytes::Payload => "payload",
            JobBytes::Checkpoint => "checkpoint",
            JobBytes::Result => "result",
        }
    }
}

/// An open answer: its head, and its body still to read.
pub(crate) struct Response {
    pub(crate) request: String,
    pub(crate) head: ResponseHead,
    pub(crate) body: BodyReader<BufReader<Stream>>,
}

impl Client {
    /// A client for the daemon of the data directory `dir` (its socket
    /// `<dir>/corvee.sock`).
    pub fn for_dir(dir: &Path) -> Client {
        Client::unix(crate::dir::socket_path(dir))
    }

    /// A client for the daemon listening on this Unix socket.
    pub fn unix(socket: impl Into<PathBuf>) -> Client {
        Client {
            endpoint: Endpoint::Unix { socket: socket.into() },
            authorization: None,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
        }
    }

    /// A client for the daemon listening on TCP `host:port`, sending `token`
    /// as `Authorization: Bearer <token>` if given.
    pub fn tcp(address: impl Into<String>, token: Option<String>) -> Client {
        Client {
            endpoint: Endpoint::Tcp { address: address.into() },
            authorization: token.map(|token| BearerToken(format!("Bearer {token}"))),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
        }
    }

    /// The same client with another limit on waiting for an answer (`None`:
    /// wait as long as it takes). Streams are never limited.
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Client {
        self.request_timeout = timeout;
        self
    }

    /// Where this client connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    // ---- jobs ----

    /// `POST /v1/jobs` with one job; durable when this returns.
    pub fn enqueue(&self, request: &JobRequest) -> Result<EnqueuedJob, ClientError> {
        let path = "/v1/jobs";
        let answer: EnqueueResponse = self.call_json("POST", path, Some(request))?;
        single_job(answer, "POST /v1/jobs")
    }

    /// `POST /v1/jobs` with a batch (all or none, at most 10,000); the
    /// answers are in request order.
    pub fn enqueue_batch(&self, requests: &[JobRequest]) -> Result<Vec<EnqueuedJob>, ClientError> {
        let answer: EnqueueResponse = self.call_json("POST", "/v1/jobs", Some(&JobBatchJson { jobs: requests }))?;
        Ok(answer.jobs)
    }

    /// `POST /v1/commands`: a command job.
    pub fn enqueue_command(&self, request: &CommandRequest) -> Result<EnqueuedJob, ClientError> {
        let answer: EnqueueResponse = self.call_json("POST", "/v1/commands", Some(request))?;
        single_job(answer, "POST /v1/commands")
    }

    /// `GET /v1/jobs/{id}`.
    pub fn job(&self, id: u64) -> Result<Job, ClientError> {
        self.call_json::<(), _>("GET", &format!("/v1/jobs/{id}"), None)
    }

    /// `GET /v1/jobs?...`: one page of jobs, in id order.
    pub fn list(&self, filter: &ListFilter) -> Result<JobPage, ClientError> {
        self.call_json::<(), _>("GET", &format!("/v1/jobs{}", filter.query_string()), None)
    }

    /// `GET /v1/jobs/{id}/payload`: the payload's bytes.
    pub fn payload(&self, id: u64) -> Result<Vec<u8>, ClientError> {
        self.job_bytes(id, JobBytes::Payload)
    }

    /// `GET /v1/jobs/{id}/checkpoint`: the last checkpoint's bytes
    /// (`404` if there is none).
    pub fn checkpoint(&self, id: u64) -> Result<Vec<u8>, ClientError> {
        self.job_bytes(id, JobBytes::Checkpoint)
    }

    /// `GET /v1/jobs/{id}/result`: the result's bytes (`404` if there is
    /// none).
    pub fn result(&self, id: u64) -> Result<Vec<u8>, ClientError> {
        self.job_bytes(id, JobBytes::Result)
    }

    fn job_bytes(&self, id: u64, which: JobBytes) -> Result<Vec<u8>, ClientError> {
        let response =
            self.send::<()>("GET", &format!("/v1/jobs/{id}/{}", which.route()), None, self.request_timeout)?;
        let (_, body) = response.read_success()?;
        Ok(body)
    }

    /// `GET /v1/jobs/{id}/logs?offset=N`: the log from `offset` to its
    /// current end.
    pub fn logs(&self, id: u64, offset: u64) -> Result<LogChunk, ClientError> {
        let path = format!("/v1/jobs/{id}/logs?offset={offset}");
        let response = self.send::<()>("GET", &path, None, self.request_timeout)?;
        let (head, text) = response.read_success()?;
        Ok(LogChunk { next_offset: logs::offset_header(&head), text })
    }

    /// `GET /v1/jobs/{id}/logs?offset=N&follow=true`: the log from `offset`,
    /// as a `Read` that gives lines as they are written and ends when the job
    /// finishes.
    pub fn follow_logs(&self, id: u64, offset: u64) -> Result<LogFollow, ClientError> {
        let path = format!("/v1/jobs/{id}/logs?offset={offset}&follow=true");
        let response = self.send::<()>("GET", &path, None, None)?.expect_success()?;
        Ok(LogFollow::new(response))
    }

    /// `GET /v1/jobs/{id}/wait?timeout_ms=N`: the job once it has finished,
    /// or as it is when `timeout` (at most [`MAX_WAIT`]) has passed — check
    /// its `state`.
    pub fn wait(&self, id: u64, timeout: Duration) -> Result<Job, ClientError> {
        let timeout = timeout.min(MAX_WAIT);
        let path = format!("/v1/jobs/{id}/wait?timeout_ms={}", timeout.as_millis());
        let read_timeout = self.request_timeout.map(|limit| limit + timeout);
        let response = self.send::<()>("GET", &path, None, read_timeout)?;
        response.read_json()
    }

    /// `POST /v1/jobs/{id}/cancel`.
    pub fn cancel(&self, id: u64) -> Result<Cancelled, ClientError> {
        self.call_json::<(), _>("POST", &format!("/v1/jobs/{id}/cancel"), None)
    }

    /// `POST /v1/executions/{execution}/cancel`: cancels only that attempt,
    /// if it is still running.
    pub fn cancel_execution(&self, execution: &str) -> Result<Cancelled, ClientError> {
        let path = format!("/v1/executions/{}/cancel", http::percent_encode(execution));
        self.call_json::<(), _>("POST", &path, None)
    }

    /// `POST /v1/jobs/{id}/retry`: a finished job runs again, from its last
    /// checkpoint.
    pub fn retry(&self, id: u64) -> Result<u64, ClientError> {
        let answer: IdAnswer = self.call_json::<(), _>("POST", &format!("/v1/jobs/{id}/retry"), None)?;
        Ok(answer.id)
    }

    /// `POST /v1/jobs/{id}/move`: the job moves to `queue`.
    pub fn move_job(&self, id: u64, queue: &str) -> Result<u64, ClientError> {
        let answer: IdAnswer = self.call_json("POST", &format!("/v1/jobs/{id}/move"), Some(&MoveBody { queue }))?;
        Ok(answer.id)
    }

    // ---- queues ----

    /// `GET /v1/queues`: every queue's settings and counts.
    pub fn queues(&self) -> Result<QueueList, ClientError> {
        self.call_json::<(), _>("GET", "/v1/queues", None)
    }

    /// `POST /v1/queues/{queue}/pause`.
    pub fn pause(&self, queue: &str) -> Result<QueuePaused, ClientError> {
        self.call_json::<(), _>("POST", &format!("/v1/queues/{}/pause", http::percent_encode(queue)), None)
    }

    /// `POST /v1/queues/{queue}/resume`.
    pub fn resume(&self, queue: &str) -> Result<QueuePaused, ClientError> {
        self.call_json::<(), _>("POST", &format!("/v1/queues/{}/resume", http::percent_encode(queue)), None)
    }

    /// `POST /v1/queues/{queue}/purge`: deletes the queue's available jobs.
    pub fn purge(&self, queue: &str) -> Result<QueuePurged, ClientError> {
        self.call_json::<(), _>("POST", &format!("/v1/queues/{}/purge", http::percent_encode(queue)), None)
    }

    // ---- events, monitor, health ----

    /// `GET /v1/events` (or `?job=ID`): the event stream. Returns once the
    /// daemon has answered, so events from then on are in the stream.
    pub fn events(&self, job: Option<u64>) -> Result<EventStream, ClientError> {
        let path = match job {
            Some(id) => format!("/v1/events?job={id}"),
            None => "/v1/events".to_string(),
        };
        let response = self.send::<()>("GET", &path, None, None)?.expect_success()?;
        let request = response.request.clone();
        Ok(EventStream::new(Box::new(BufReader::new(response.body)), request))
    }

    /// `GET /v1/monitor`: what the monitor currently finds.
    pub fn monitor(&self) -> Result<MonitorReport, ClientError> {
        self.call_json::<(), _>("GET", "/v1/monitor", None)
    }

    /// `GET /v1/health`.
    pub fn health(&self) -> Result<Health, ClientError> {
        self.call_json::<(), _>("GET", "/v1/health", None)
    }

    /// `GET /metrics`: Prometheus text.
    pub fn metrics(&self) -> Result<String, ClientError> {
        let response = self.send::<()>("GET", "/metrics", None, self.request_timeout)?;
        let request = response.request.clone();
        let (_, body) = response.read_success()?;
        String::from_utf8(body)
            .map_err(|_| ClientError::Protocol { request, detail: "the metrics are not UTF-8".to_string() })
    }

    /// Any route, answered with JSON: for routes this client has no method
    /// for yet. `path` includes the query string, already encoded.
    pub fn call_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.send(method, path, body, self.request_timeout)?.read_json()
    }

    // ---- the wire ----

    fn connect(&self) -> Result<Stream, ClientError> {
        match &self.endpoint {
            Endpoint::Unix { socket } => match UnixStream::connect(socket) {
                Ok(stream) => Ok(Stream::Unix(stream)),
                Err(error)
                    if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) =>
                {
                    let dir = socket.parent().map(Path::to_path_buf).unwrap_or_default();
                    Err(ClientError::NoDaemon { dir, socket: socket.clone(), cause: error.kind() })
                }
                Err(source) => Err(ClientError::Connect { address: socket.display().to_string(), source }),
            },
            Endpoint::Tcp { address } => match std::net::TcpStream::connect(address) {
                Ok(stream) => {
                    // Requests are single writes; waiting to coalesce them
                    // only adds latency.
                    let _ = stream.set_nodelay(true);
                    Ok(Stream::Tcp(stream))
                }
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Err(ClientError::NoDaemonAt { address: address.clone() })
                }
                Err(source) => Err(ClientError::Connect { address: address.clone(), source }),
            },
        }
    }

    /// Sends one request and reads the answer's head.
    pub(crate) fn send<B: Serialize>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&B>,
        read_timeout: Option<Duration>,
    ) -> Result<Response, ClientError> {
        // The request's name in errors: method and path without the query,
        // which is short and never carries secrets or payloads.
        let request = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let body = match body {
            Some(body) => Some(
                serde_json::to_vec(body).map_err(|source| ClientError::Encode { request: request.clone(), source })?,
            ),
            None => None,
        };
        let mut stream = self.connect()?;
        let io_error = |source: std::io::Error| wire_error(&request, source);
        stream.set_read_timeout(read_timeout).map_err(io_error)?;
        let host = match &self.endpoint {
            Endpoint::Unix { .. } => "localhost",
            Endpoint::Tcp { address } => address.as_str(),
        };
        let wire_request = Request {
            method,
            path,
            body: body.as_deref(),
            authorization: self.authorization.as_ref().map(|token| token.0.as_str()),
            host,
        };
        http::write_request(&mut stream, &wire_request).map_err(io_error)?;
        let mut reader = BufReader::new(stream);
        let head = http::read_head(&mut reader).map_err(io_error)?;
        let framing = head.framing().map_err(io_error)?;
        Ok(Response { request, head, body: BodyReader::new(reader, framing) })
    }
}

/// An I/O error on the wire: a protocol error if the peer sent something
/// that is not HTTP, else a connection error.
fn wire_error(request: &str, source: std::io::Error) -> ClientError {
    if source.kind() == std::io::ErrorKind::InvalidData {
        ClientError::Protocol { request: request.to_string(), detail: source.to_string() }
    } else {
        ClientError::Io { request: request.to_string(), source }
    }
}

fn single_job(answer: EnqueueResponse, request: &str) -> Result<EnqueuedJob, ClientError> {
    match answer.jobs.as_slice() {
        [job] => Ok(*job),
        jobs => Err(ClientError::Protocol {
            request: request.to_string(),
            detail: format!("expected one job in the answer, got {}", jobs.len()),
        }),
    }
}

impl Response {
    /// Reads the whole body, at most [`MAX_RESPONSE_BYTES`].
    fn read_body(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        let read = (&mut self.body)
            .take(MAX_RESPONSE_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|source| wire_error(&self.request, source))?;
        if read as u64 > MAX_RESPONSE_BYTES {
            return Err(ClientError::ResponseTooLarge { request: self.request.clone(), limit: MAX_RESPONSE_BYTES });
        }
        Ok(body)
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.head.status)
    }

    /// The head and body of a 2xx answer; any other answer becomes
    /// [`ClientError::Api`].
    fn read_success(mut self) -> Result<(ResponseHead, Vec<u8>), ClientError> {
        let body = self.read_body()?;
        if !self.is_success() {
            return Err(ApiError::from_response(self.head.status, &self.head.reason, &body).into());
        }
        Ok((self.head, body))
    }

    /// The answer itself if it is a 2xx (its body unread: a stream);
    /// otherwise the error it carries.
    fn expect_success(mut self) -> Result<Response, ClientError> {
        if self.is_success() {
            return Ok(self);
        }
        let body = self.read_body()?;
        Err(ApiError::from_response(self.head.status, &self.head.reason, &body).into())
    }

    fn read_json<T: DeserializeOwned>(self) -> Result<T, ClientError> {
        let request = self.request.clone();
        let (_, body) = self.read_success()?;
        serde_json::from_slice(&body).map_err(|source| ClientError::Decode { request, source })
    }
}

/// The body of a batch enqueue, for the spool writer.
pub(crate) fn enqueue_batch_body(requests: &[JobRequest]) -> impl Serialize + '_ {
    JobBatchJson { jobs: requests }
}
