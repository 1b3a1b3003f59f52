//! What the supervisor reports: every [`Event`] goes to one bounded tokio
//! channel the caller owns.
//!
//! **A slow consumer.** Events that carry state the daemon must keep —
//! outcomes, checkpoints, worker lifecycle — are never dropped: the task
//! that has one waits for room in the channel. While it waits it reads
//! nothing more from its worker, so the worker's socket fills and the
//! worker blocks on its writes: backpressure reaches the producer instead of
//! memory growing. (Liveness timers do not fire on the supervisor's own
//! stall: before declaring a worker hung it reads whatever the worker sent
//! meanwhile.) Progress and log events are advisory and are dropped when the
//! channel is full, counted in [`EventSink::dropped_events`]; log lines are
//! in the [`LogStore`](crate::LogStore) regardless.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use corvee_proto::{Capabilities, LogLevel, ProgressState};
use tokio::sync::mpsc;

use crate::{JobKey, JobResult, WorkerId};

/// How one attempt ended. Exactly one per submitted attempt.
#[derive(Debug)]
pub enum Outcome {
    /// The job succeeded.
    Completed {
        /// Its output, if any.
        result: Option<JobResult>,
    },
    /// The job failed. For a command job, `exit` says how it ended.
    Failed {
        /// What went wrong (kept in the job's error history).
        error: String,
        /// Whether another attempt could succeed.
        retryable: bool,
        /// A command job's exit status; `None` for protocol workers.
        exit: Option<ProcessExit>,
    },
    /// Try again after `delay`, without using up an attempt.
    Snoozed {
        /// How long to wait.
        delay: Duration,
    },
    /// The attempt stopped after an interrupt, at a safe point.
    Interrupted {
        /// What to resume from (`None`: the last checkpoint event stands).
        checkpoint: Option<Vec<u8>>,
        /// How far it got.
        progress: Option<ProgressState>,
    },
    /// The attempt died with its worker (crash, exit, kill, protocol error,
    /// timeout) without a terminal reply. Reported only after the worker
    /// process was reaped, so the attempt cannot still be running. Retryable
    /// per the queue's policy.
    Lost {
        /// What happened, for the error history.
        reason: String,
    },
    /// The job never reached a worker (its worker died before the job was
    /// written to the socket, or the pool stopped). It may be leased again
    /// without counting this attempt.
    NotStarted {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// A short name for logs and tests: `completed`, `failed`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Completed { .. } => "completed",
            Outcome::Failed { .. } => "failed",
            Outcome::Snoozed { .. } => "snoozed",
            Outcome::Interrupted { .. } => "interrupted",
            Outcome::Lost { .. } => "lost",
            Outcome::NotStarted { .. } => "not_started",
        }
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessExit {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ProcessExit {
    pub(crate) fn from_status(status: std::process::ExitStatus) -> ProcessExit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ProcessExit::Code(code),
            (None, Some(signal)) => ProcessExit::Signal(signal),
            (None, None) => ProcessExit::Code(-1),
        }
    }
}

impl std::fmt::Display for ProcessExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessExit::Code(code) => write!(f, "exit status {code}"),
            ProcessExit::Signal(signal) => write!(f, "killed by signal {signal} ({})", signal_name(*signal)),
        }
    }
}

/// The name of a signal number, for messages.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => "signal",
    }
}

/// A step of stopping something, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EscalationStep {
    /// An `interrupt` frame was sent (protocol workers with the capability).
    InterruptSent,
    /// SIGINT to the process group (command jobs).
    Sigint,
    /// SIGTERM to the process group.
    Sigterm,
    /// SIGKILL to the process group.
    Sigkill,
}

/// Whose process group a signal went to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessRef {
    /// A protocol worker of a pool: every attempt there is affected.
    Worker {
        /// The pool's name.
        pool: Arc<str>,
        /// The worker process.
        worker: WorkerId,
    },
    /// A command job's process.
    Command {
        /// The attempt.
        job: JobKey,
    },
}

/// Which output a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// The process's standard output.
    Stdout,
    /// Its standard error.
    Stderr,
    /// A `log` frame, at this level.
    Protocol(LogLevel),
    /// The supervisor's own note about the job (signals sent, exit status).
    Supervisor,
}

impl LogStream {
    /// The short name written in log files.
    pub fn name(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Protocol(level) => level.name(),
            LogStream::Supervisor => "corvee",
        }
    }
}

/// One captured log line with its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The attempt it belongs to. Output of a worker running several jobs
    /// cannot be attributed and has none (the worker's identity says whose
    /// it is); a `log` frame names its job itself.
    pub job: Option<JobKey>,
    /// The process that produced it.
    pub source: ProcessRef,
    /// Which output.
    pub stream: LogStream,
    /// When the supervisor read it.
    pub timestamp: SystemTime,
    /// The line, without its newline; at most the configured line length
    /// (longer lines are cut and end with a marker).
    pub text: String,
}

/// Everything the supervisor reports.
#[derive(Debug)]
pub enum Event {
    /// How far an attempt has got (advisory: dropped when the channel is full).
    Progress {
        /// The attempt.
        job: JobKey,
        /// Its progress.
        progress: ProgressState,
    },
    /// State an attempt can resume from; store it with the job.
    Checkpoint {
        /// The attempt.
        job: JobKey,
        /// The opaque state.
        checkpoint: Vec<u8>,
    },
    /// A log line (advisory here; the log store has it).
    Log(LogLine),
    /// How an attempt ended: exactly one per submitted attempt.
    Outcome {
        /// The attempt.
        job: JobKey,
        /// How it ended.
        outcome: Outcome,
    },
    /// A step of an interrupt or stop: an `interrupt` frame or a signal sent.
    Escalation {
        /// Whose process group.
        target: ProcessRef,
        /// What was done.
        step: EscalationStep,
        /// Why (`cancelled`, `deadline`, `shutdown`, `interrupt grace expired`, ...).
        reason: String,
    },
    /// A command job's process was started.
    CommandStarted {
        /// The attempt.
        job: JobKey,
        /// Its pid (also its process group id).
        pid: u32,
    },
    /// A worker process was started.
    WorkerStarted {
        /// The pool.
        pool: Arc<str>,
        /// The new process.
        worker: WorkerId,
        /// Its pid (also its process group id).
        pid: u32,
    },
    /// A worker finished its handshake and takes jobs.
    WorkerReady {
        /// The pool.
        pool: Arc<str>,
        /// The process.
        worker: WorkerId,
        /// The name it announced.
        worker_name: String,
        /// The window granted.
        window: u32,
        /// The capabilities in use.
        capabilities: Capabilities,
    },
    /// A worker process ended and was reaped (its group SIGKILLed first).
    WorkerExited {
        /// The pool.
        pool: Arc<str>,
        /// The process.
        worker: WorkerId,
        /// Its pid.
        pid: u32,
        /// How it ended.
        exit: ProcessExit,
        /// Why the supervisor thinks it ended: `exited`, `protocol error: ...`,
        /// `hung: ...`, `handshake timeout`, ...
        reason: String,
        /// How long it ran.
        uptime: Duration,
    },
    /// A worker could not be started at all.
    WorkerSpawnFailed {
        /// The pool.
        pool: Arc<str>,
        /// What went wrong.
        error: String,
    },
    /// A worker slot will be restarted after `delay`.
    RestartScheduled {
        /// The pool.
        pool: Arc<str>,
        /// Which of the pool's processes (0-based).
        slot: usize,
        /// The backoff.
        delay: Duration,
        /// Failures in a row right after start (0 after a healthy run).
        consecutive_failures: u32,
    },
    /// A worker keeps dying right after start; its restarts are backed off
    /// exponentially instead of spinning.
    CrashLooping {
        /// The pool.
        pool: Arc<str>,
        /// Which of the pool's processes.
        slot: usize,
        /// Failures in a row right after start.
        consecutive_failures: u32,
        /// The next restart's delay.
        next_restart_in: Duration,
    },
    /// A job-scoped message for an attempt that is not outstanding was
    /// ignored (fencing): a late reply for an attempt given up on, or a
    /// second terminal reply.
    StaleReply {
        /// The pool.
        pool: Arc<str>,
        /// The worker that sent it.
        worker: WorkerId,
        /// The attempt it named.
        job: JobKey,
        /// The message type's name.
        message: &'static str,
    },
}

/// Called with a process's pid (its process group id) the moment it was
/// spawned: see [`EventSink::on_process_started`].
pub type ProcessStartedHook = Arc<dyn Fn(u32) + Send + Sync>;

/// The sending side of the event channel, shared by the supervisor's tasks.
#[derive(Clone)]
pub struct EventSink {
    sender: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
    process_started: Option<ProcessStartedHook>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("dropped", &self.dropped_events())
            .field("process_started", &self.process_started.is_some())
            .finish_non_exhaustive()
    }
}

impl EventSink {
    /// Wraps the sender of a bounded channel the caller reads.
    pub fn new(sender: mpsc::Sender<Event>) -> EventSink {
        EventSink { sender, dropped: Arc::new(AtomicU64::new(0)), process_started: None }
    }

    /// Calls `hook` synchronously, right after each spawn of a worker or a
    /// command job's process and before anything else is done with it —
    /// unlike the events, which wait their turn in the channel. For an
    /// owner that must note every process it may have to kill after its own
    /// crash (a ledger written before the process can run for long). The
    /// hook must be quick and must not block.
    pub fn on_process_started(mut self, hook: impl Fn(u32) + Send + Sync + 'static) -> EventSink {
        self.process_started = Some(Arc::new(hook));
        self
    }

    /// Tells the hook a process was spawned.
    pub(crate) fn process_started(&self, pid: u32) {
        if let Some(hook) = &self.process_started {
            hook(pid);
        }
    }

    /// A bounded channel and its sink.
    pub fn channel(capacity: usize) -> (EventSink, mpsc::Receiver<Event>) {
        let (sender, receiver) = mpsc::channel(capacity);
        (EventSink::new(sender), receiver)
    }

    /// Sends an event that must not be lost, waiting for room. If the
    /// receiver is gone the event is discarded: nobody is listening.
    pub async fn send(&self, event: Event) {
        let _ = self.sender.send(event).await;
    }

    /// Sends an advisory event if there is room, else drops and counts it.
    pub fn offer(&self, event: Event) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.sender.try_send(event) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many advisory events were dropped because the channel was full.
    pub fn dropped_events(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
