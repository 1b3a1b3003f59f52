//! [`Worker`]: the builder a program fills with handlers, and `run`, which
//! takes the socket, says hello, waits for the welcome and then serves jobs
//! until the supervisor says shutdown (goodbye, exit 0) or goes away (EOF).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use corvee_proto::{
    Capabilities, FrameDecoder, Hello, Message, Peer, SendBuffer, Welcome, DEFAULT_MAX_FRAME_BYTES,
    HANDSHAKE_MAX_FRAME_BYTES, MIN_PROTOCOL_VERSION, PROTOCOL_MAX_FRAME_BYTES, PROTOCOL_VERSION,
};

use crate::connection::Connection;
use crate::peek::{PeekAnswerer, PeekHandler};
use crate::session::Session;
use crate::{JobContext, JobError, WorkerError, SDK_NAME};

/// A job handler: runs one attempt, returns its result or why it has none.
pub(crate) type Handler = Arc<dyn Fn(&JobContext) -> Result<Option<Vec<u8>>, JobError> + Send + Sync + 'static>;

/// The most bytes [`PayloadFd::read_all`](crate::PayloadFd::read_all) reads
/// into memory unless configured otherwise (mapping has no such limit: it
/// costs address space, not memory).
pub const DEFAULT_MAX_PAYLOAD_BYTES: u64 = 1 << 30;

/// How a worker's run ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerExit {
    /// The supervisor asked the worker to stop; every job got its reply and
    /// the worker said goodbye. Exit with status 0.
    Shutdown,
    /// The supervisor went away (EOF on the socket). Running handlers were
    /// interrupted and are abandoned; exit now — nobody will take their
    /// results.
    SupervisorGone,
}

/// A worker under construction: its name, its handlers and its limits.
pub struct Worker {
    name: String,
    handlers: BTreeMap<String, Handler>,
    peek: Option<PeekHandler>,
    window: u32,
    max_frame_bytes: u32,
    max_payload_bytes: u64,
    problems: Vec<String>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .field("peek", &self.peek.is_some())
            .field("window", &self.window)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .finish()
    }
}

impl Worker {
    /// A worker named `name` (for logs and the dashboard) with no handlers
    /// yet; it asks for as many jobs at once as the machine has cores.
    pub fn new(name: impl Into<String>) -> Worker {
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        Worker {
            name: name.into(),
            handlers: BTreeMap::new(),
            peek: None,
            window: u32::try_from(cores).unwrap_or(u32::MAX),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            problems: Vec::new(),
        }
    }

    /// Runs jobs of `kind` with `handler`, on one of the worker's job
    /// threads.
    pub fn handler<F>(mut self, kind: impl Into<String>, handler: F) -> Worker
    where
        F: Fn(&JobContext) -> Result<Option<Vec<u8>>, JobError> + Send + Sync + 'static,
    {
        let kind = kind.into();
        if self.handlers.insert(kind.clone(), Arc::new(handler)).is_some() {
            self.problems.push(format!("kind {kind:?} has two handlers; register each kind once"));
        }
        self
    }

    /// Answers peeks — read-only questions from the supervisor about this
    /// worker's state — with `handler` (query bytes in, answer bytes or an
    /// error out), on a thread of its own. Without one the worker does not
    /// announce the `peek` capability.
    pub fn peek_handler<F>(mut self, handler: F) -> Worker
    where
        F: Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    {
        self.peek = Some(Arc::new(handler));
        self
    }

    /// How many jobs may run at once (the window asked for in the hello;
    /// the supervisor may grant fewer). One thread per running job.
    pub fn window(mut self, window: u32) -> Worker {
        self.window = window;
        self
    }

    /// The largest frame this worker accepts, header included (64 KiB to
    /// 64 MiB; default 1 MiB). Larger payloads come as fds.
    pub fn max_frame_bytes(mut self, max_frame_bytes: u32) -> Worker {
        self.max_frame_bytes = max_frame_bytes;
        self
    }

    /// The most bytes a payload fd may hold to be read into memory (see
    /// [`DEFAULT_MAX_PAYLOAD_BYTES`]).
    pub fn max_payload_bytes(mut self, max_payload_bytes: u64) -> Worker {
        self.max_payload_bytes = max_payload_bytes;
        self
    }

    /// Runs the worker on the socket named by `CORVEE_WORKER_FD` until the
    /// supervisor says shutdown or goes away. Call it from `main`, once,
    /// before anything else opens files.
    pub fn run(self) -> Result<WorkerExit, WorkerError> {
        self.check()?;
        // SAFETY: the socket was inherited on this fd and nothing else in
        // the process owns it; `run` is documented as called once, early.
        let socket = unsafe { corvee_proto::worker_socket_from_env() }?;
        self.run_on(socket)
    }

    /// Runs the worker on an already connected protocol socket (blocking
    /// mode). For tests and for programs that obtain the socket themselves.
    pub fn run_on(self, socket: OwnedFd) -> Result<WorkerExit, WorkerError> {
        self.check()?;
        let socket = Arc::new(socket);
        let capabilities =
            Capabilities { fd_payloads: true, checkpoints: true, peek: self.peek.is_some(), interrupt: true };
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            min_protocol_version: MIN_PROTOCOL_VERSION,
            worker_name: self.name.clone(),
            job_kinds: self.handlers.keys().cloned().collect(),
            capabilities,
            window: self.window,
            max_frame_bytes: self.max_frame_bytes,
            sdk: Some(SDK_NAME.to_owned()),
        };
        let mut outgoing = SendBuffer::new();
        outgoing.push(&hello, Vec::new()).map_err(|source| WorkerError::Encode { what: "hello", source })?;
        outgoing.send_to(&*socket).map_err(|source| WorkerError::Io { operation: "writing the hello to", source })?;

        // The supervisor may send jobs right behind the welcome, so the
        // decoder accepts this worker's own limit from the start.
        let mut decoder = FrameDecoder::new(self.max_frame_bytes).receiving_as(Peer::Worker);
        let welcome = self.wait_for_welcome(&mut decoder, &socket)?;
        outgoing.set_peer_max_frame_bytes(welcome.max_frame_bytes);
        let in_use = welcome.capabilities.intersection(capabilities);
        let connection = Arc::new(Connection::new(
            socket.clone(),
            outgoing,
            in_use,
            u64::from(welcome.payload_fd_threshold_bytes),
            self.max_payload_bytes,
        ));
        if welcome.heartbeat_interval_ms > 0 {
            let interval = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms));
            connection
                .start_heartbeats(interval)
                .map_err(|source| WorkerError::Io { operation: "starting the heartbeat thread for", source })?;
        }
        let peek = match (self.peek, in_use.peek) {
            (Some(handler), true) => Some(
                PeekAnswerer::start(handler, connection.clone())
                    .map_err(|source| WorkerError::Io { operation: "starting the peek thread for", source })?,
            ),
            _ => None,
        };
        let window = welcome.window.min(self.window).max(1) as usize;
        let handlers: HashMap<String, Handler> = self.handlers.into_iter().collect();
        let session = Arc::new(Session::new(socket, connection, handlers, window, peek));
        session.serve(&mut decoder)
    }

    fn check(&self) -> Result<(), WorkerError> {
        let mut problems = self.problems.clone();
        if self.name.is_empty() {
            problems.push("the name is empty; give the worker a name for logs".to_owned());
        }
        if self.handlers.is_empty() {
            problems.push("it has no handlers; register one per job kind with Worker::handler".to_owned());
        }
        if self.window == 0 {
            problems.push("the window is 0; at least one job must run at a time".to_owned());
        }
        if !(HANDSHAKE_MAX_FRAME_BYTES..=PROTOCOL_MAX_FRAME_BYTES).contains(&self.max_frame_bytes) {
            problems.push(format!(
                "max_frame_bytes {} is outside {HANDSHAKE_MAX_FRAME_BYTES}..={PROTOCOL_MAX_FRAME_BYTES}",
                self.max_frame_bytes
            ));
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(WorkerError::Config { worker_name: self.name.clone(), problem: problems.join("; ") }),
        }
    }

    fn wait_for_welcome(&self, decoder: &mut FrameDecoder, socket: &OwnedFd) -> Result<Welcome, WorkerError> {
        loop {
            if let Some(received) = decoder.next_message()? {
                return match received.message {
                    Message::Welcome(welcome) => Ok(welcome),
                    Message::Refusal(refusal) => Err(WorkerError::Refused {
                        worker_name: self.name.clone(),
                        reason: refusal.reason,
                        message: refusal.message,
                    }),
                    other => Err(WorkerError::UnexpectedMessage {
                        expected: "welcome or refusal",
                        found: other.message_type().name().to_owned(),
                    }),
                };
            }
            match decoder.recv_from(socket) {
                Ok(0) => return Err(WorkerError::ClosedDuringHandshake { worker_name: self.name.clone() }),
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Err(WorkerError::ClosedDuringHandshake { worker_name: self.name.clone() });
                }
                Ok(_) => {}
                Err(source) => return Err(WorkerError::Io { operation: "reading the welcome from", source }),
            }
        }
    }
}
