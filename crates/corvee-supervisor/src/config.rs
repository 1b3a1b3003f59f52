//! Configuration of worker pools and the command runner, with the defaults
//! `docs/protocol.md` proposes. Every bound the supervisor keeps is here.

use std::path::PathBuf;
use std::time::Duration;

use corvee_proto::DEFAULT_MAX_FRAME_BYTES;

/// The longest captured output line kept whole; longer lines are cut and
/// marked.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 10;

/// Payloads larger than this go to workers as fds (when they take fds).
pub const DEFAULT_PAYLOAD_FD_THRESHOLD_BYTES: u32 = 64 << 10;

/// The most jobs a pool grants one worker process, whatever it asks for.
pub const MAX_WINDOW: u32 = 4096;

/// Liveness and stopping timeouts of a pool's workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerTimeouts {
    /// From spawn to a whole `hello`; then SIGTERM, then SIGKILL after
    /// `term_grace`. Default 10 s.
    pub handshake: Duration,
    /// The worker heartbeats after this long without sending; no whole frame
    /// for three intervals means hung: SIGKILL. Default 5 s.
    pub heartbeat_interval: Duration,
    /// After an `interrupt`, how long to wait for the terminal reply before
    /// SIGTERM to the worker's process group. Default 10 s.
    pub interrupt_grace: Duration,
    /// After SIGTERM, how long before SIGKILL. Default 5 s.
    pub term_grace: Duration,
}

impl Default for WorkerTimeouts {
    fn default() -> WorkerTimeouts {
        WorkerTimeouts {
            handshake: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(5),
            interrupt_grace: Duration::from_secs(10),
            term_grace: Duration::from_secs(5),
        }
    }
}

/// When and how fast a pool restarts its dead workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The delay after the first failure right after start. Default 100 ms.
    pub initial_backoff: Duration,
    /// The cap of the exponential backoff. Default 30 s.
    pub max_backoff: Duration,
    /// A worker that ran at least this long after a successful handshake was
    /// healthy: its death resets the backoff. Default 10 s.
    pub healthy_after: Duration,
    /// After this many failures in a row right after start, the slot is
    /// reported as crash-looping. Default 3.
    pub crash_loop_after: u32,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            healthy_after: Duration::from_secs(10),
            crash_loop_after: 3,
        }
    }
}

/// A pool of identical worker processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// The pool's name, in events and logs.
    pub name: String,
    /// The program and its arguments. Never a shell string.
    pub argv: Vec<String>,
    /// Environment variables added to the supervisor's own (plus
    /// `CORVEE_WORKER_FD`). Their values never appear in logs or events.
    pub env: Vec<(String, String)>,
    /// The working directory; `None`: the supervisor's.
    pub cwd: Option<PathBuf>,
    /// How many worker processes run at once.
    pub processes: usize,
    /// The most jobs in flight at one process. A worker asking for less gets
    /// what it asked for. At most [`MAX_WINDOW`].
    pub window: u32,
    /// The job kinds this pool runs; a worker must announce at least one of
    /// them. Empty: whatever the workers announce.
    pub kinds: Vec<String>,
    /// Liveness and stopping timeouts.
    pub timeouts: WorkerTimeouts,
    /// Restart backoff and crash-loop detection.
    pub restart: RestartPolicy,
    /// The largest frame the supervisor accepts from these workers.
    pub max_frame_bytes: u32,
    /// Payloads larger than this travel as fds to workers that take them.
    pub payload_fd_threshold_bytes: u32,
    /// The longest output line kept whole.
    pub max_line_bytes: usize,
}

impl PoolConfig {
    /// A pool named `name` running `argv`, one process, window 1, defaults
    /// elsewhere.
    pub fn new(name: impl Into<String>, argv: Vec<String>) -> PoolConfig {
        PoolConfig {
            name: name.into(),
            argv,
            env: Vec::new(),
            cwd: None,
            processes: 1,
            window: 1,
            kinds: Vec::new(),
            timeouts: WorkerTimeouts::default(),
            restart: RestartPolicy::default(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            payload_fd_threshold_bytes: DEFAULT_PAYLOAD_FD_THRESHOLD_BYTES,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// The command runner: one process per job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRunnerConfig {
    /// The most command jobs running at once.
    pub max_concurrent: usize,
    /// After SIGINT, how long before SIGTERM. Default 10 s.
    pub interrupt_grace: Duration,
    /// After SIGTERM, how long before SIGKILL. Default 5 s.
    pub term_grace: Duration,
    /// The longest output line kept whole.
    pub max_line_bytes: usize,
}

impl Default for CommandRunnerConfig {
    fn default() -> CommandRunnerConfig {
        CommandRunnerConfig {
            max_concurrent: 4,
            interrupt_grace: Duration::from_secs(10),
            term_grace: Duration::from_secs(5),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}
