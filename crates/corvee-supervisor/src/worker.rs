//! One worker process's life, from spawn to reaping: the handshake, the
//! pipelined window, matching replies to attempts, liveness, interrupts and
//! their escalation, peeks, graceful shutdown, and the final accounting.
//!
//! A single tokio task owns everything about the process — its socket, its
//! output pipes, its pidfd and the attempts in flight — so there is no
//! locking on the hot path except the pool's small accounting lock.
//!
//! The rules this file keeps:
//! - every attempt that reaches the session gets exactly one outcome;
//! - once any signal went to the worker, outcomes wait until the process is
//!   reaped, and so does every `Lost`: an attempt is reported dead only when
//!   it cannot still run;
//! - the process group is SIGKILLed before the leader is reaped, so
//!   grandchildren die too and the group id cannot have been reused.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corvee_proto::{
    Capabilities, DecodeError, EncodeError, FrameDecoder, Interrupt, Job, Message, Peek, PeekResult, Peer, Received,
    SendBuffer, Shutdown, DEFAULT_SEND_BUFFER_LIMIT_BYTES, HANDSHAKE_MAX_FRAME_BYTES, HEADER_BYTES,
};
use rustix::process::Signal;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::handshake::{negotiate, HandshakeSettings};
use crate::output::LineReader;
use crate::payload::{prepare_payload, WirePayload};
use crate::pool::{PeekRequest, PoolShared, QueuedJob, ReadyWorker};
use crate::spawn::{set_nonblocking, spawn_process, ProcessHandle, SpawnRequest};
use crate::{
    EscalationStep, Event, JobKey, JobResult, JobToRun, LogLine, LogStream, Outcome, ProcessExit, ProcessRef,
    ProgressState, SpawnError, WorkerId,
};

/// How many bytes one pass over the socket reads before giving the rest of
/// the task a turn.
const SOCKET_READ_BUDGET_BYTES: usize = 1 << 20;

/// How a session ended.
#[derive(Debug)]
pub(crate) struct SessionEnd {
    pub(crate) pid: u32,
    pub(crate) exit: ProcessExit,
    pub(crate) reason: String,
    pub(crate) handshake_completed: bool,
    pub(crate) uptime: Duration,
}

/// An attempt sent to the worker.
struct InFlight {
    key: JobKey,
    deadline: Option<Instant>,
    /// When the interrupt grace runs out, once an interrupt was sent.
    interrupt_deadline: Option<Instant>,
    interrupted: bool,
    /// A terminal reply that arrived after a signal was sent: reported once
    /// the process is reaped.
    deferred: Option<Outcome>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshaking,
    Running,
}

enum Wake {
    Exited,
    Socket,
    Writable,
    Stdout,
    Stderr,
    Inbox,
    Timer,
}

/// Starts a worker process for `slot` and runs it until it is reaped.
pub(crate) async fn run_worker(
    shared: &Arc<PoolShared>,
    slot: usize,
    worker: WorkerId,
) -> Result<SessionEnd, SpawnError> {
    let config = &shared.config;
    let program = config.argv.first().cloned().unwrap_or_default();
    let plumbing = |what: &'static str| {
        let program = program.clone();
        move |source: io::Error| SpawnError::Plumbing { what, program, source }
    };
    let (supervisor_end, worker_end) = corvee_proto::socket_pair().map_err(plumbing("protocol socket"))?;
    set_nonblocking(&supervisor_end).map_err(plumbing("protocol socket"))?;
    let spawned = spawn_process(SpawnRequest {
        argv: &config.argv,
        env: &config.env,
        cwd: config.cwd.as_deref(),
        worker_socket: Some(worker_end),
    })?;
    let pid = spawned.process.pid().as_raw_nonzero().get() as u32;
    shared.events.process_started(pid);
    let socket = crate::spawn::register_fd(supervisor_end, Interest::READABLE | Interest::WRITABLE)
        .map_err(plumbing("protocol socket"))?;
    let stdout = LineReader::new(spawned.stdout, config.max_line_bytes).map_err(plumbing("stdout pipe"))?;
    let stderr = LineReader::new(spawned.stderr, config.max_line_bytes).map_err(plumbing("stderr pipe"))?;
    shared.events.send(Event::WorkerStarted { pool: shared.name.clone(), worker, pid }).await;
    let now = Instant::now();
    let mut session = Session {
        shared,
        slot,
        worker,
        source: ProcessRef::Worker { pool: shared.name.clone(), worker },
        pid,
        process: spawned.process,
        socket: Some(socket),
        socket_write_broken: false,
        decoder: FrameDecoder::new(HANDSHAKE_MAX_FRAME_BYTES).receiving_as(Peer::Supervisor),
        outgoing: SendBuffer::new(),
        stdout,
        stderr,
        phase: Phase::Handshaking,
        in_flight: HashMap::new(),
        backlog: VecDeque::new(),
        capabilities: Capabilities::default(),
        fd_threshold_bytes: u64::from(config.payload_fd_threshold_bytes),
        handshake_deadline: Some(now + config.timeouts.handshake),
        last_frame_at: now,
        hung_after: None,
        shutdown_deadline: None,
        shutdown_sent: false,
        signalled: false,
        kill_at: None,
        killed: false,
        death_reason: None,
        exited: false,
        reaped: false,
        more_to_read: false,
        line_buffer: Vec::new(),
        peek_pending: None,
        last_peek_request_id: 0,
    };
    session.run().await;
    Ok(session.finish().await)
}

struct Session<'a> {
    shared: &'a Arc<PoolShared>,
    slot: usize,
    worker: WorkerId,
    source: ProcessRef,
    pid: u32,
    process: ProcessHandle,
    /// `None` once closed (protocol error, refusal) or at EOF.
    socket: Option<AsyncFd<OwnedFd>>,
    /// A write failed (the worker closed its end); stop writing.
    socket_write_broken: bool,
    decoder: FrameDecoder,
    outgoing: SendBuffer,
    stdout: LineReader,
    stderr: LineReader,
    phase: Phase,
    /// Attempts written to the send buffer, by job id.
    in_flight: HashMap<u64, InFlight>,
    /// Jobs taken from the inbox but not yet encoded (the send buffer was
    /// full).
    backlog: VecDeque<QueuedJob>,
    capabilities: Capabilities,
    fd_threshold_bytes: u64,
    handshake_deadline: Option<Instant>,
    last_frame_at: Instant,
    /// No whole frame for this long after the handshake means hung.
    hung_after: Option<Duration>,
    shutdown_deadline: Option<Instant>,
    shutdown_sent: bool,
    /// Some signal went to the group: outcomes wait for the reaping.
    signalled: bool,
    /// When to SIGKILL, after a SIGTERM or an EOF.
    kill_at: Option<Instant>,
    killed: bool,
    /// The first thing that went wrong, for `Lost` reasons and the exit event.
    death_reason: Option<String>,
    exited: bool,
    /// The process was reaped: no more signals.
    reaped: bool,
    /// A read pass stopped at its budget with data left.
    more_to_read: bool,
    line_buffer: Vec<String>,
    /// The peek sent and not yet answered: its request id and where the
    /// answer goes. Kept after the caller stopped waiting, so a second peek
    /// is never outstanding at the worker.
    peek_pending: Option<(u64, tokio::sync::oneshot::Sender<PeekResult>)>,
    last_peek_request_id: u64,
}

impl Session<'_> {
    async fn run(&mut self) {
        let waker = &self.shared.slot_wakers[self.slot];
        let mut timer = std::pin::pin!(tokio::time::sleep_until(far_future().into()));
        loop {
            if self.exited {
                return;
            }
            let next_deadline = self.next_deadline();
            if let Some(deadline) = next_deadline {
                timer.as_mut().reset(deadline.into());
            }
            let socket = self.socket.as_ref();
            let want_write = socket.is_some() && !self.socket_write_broken && !self.outgoing.is_empty();
            let more_to_read = self.more_to_read;
            let wake = tokio::select! {
                biased;
                () = self.process.exited() => Wake::Exited,
                () = async {
                    if !more_to_read {
                        readable(socket).await
                    }
                }, if socket.is_some() => Wake::Socket,
                () = writable(socket), if want_write => Wake::Writable,
                () = self.stdout.readable() => Wake::Stdout,
                () = self.stderr.readable() => Wake::Stderr,
                () = waker.notified() => Wake::Inbox,
                () = &mut timer, if next_deadline.is_some() => Wake::Timer,
            };
            match wake {
                Wake::Exited => {
                    self.process.note_exited();
                    self.exited = true;
                }
                Wake::Socket => self.read_socket().await,
                Wake::Writable => {}
                Wake::Stdout => self.read_output(LogStream::Stdout).await,
                Wake::Stderr => self.read_output(LogStream::Stderr).await,
                Wake::Inbox => self.take_inbox().await,
                Wake::Timer => self.check_deadlines().await,
            }
            self.flush().await;
        }
    }

    // ----- timers -------------------------------------------------------

    fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |current| current.min(at)));
            }
        };
        consider(self.kill_at);
        if self.killed {
            return next;
        }
        consider(self.handshake_deadline);
        if self.phase == Phase::Running && !self.signalled {
            consider(self.hung_after.map(|after| self.last_frame_at + after));
        }
        consider(self.shutdown_deadline);
        for in_flight in self.in_flight.values() {
            if in_flight.deferred.is_some() {
                continue;
            }
            if !in_flight.interrupted {
                consider(in_flight.deadline);
            }
            consider(in_flight.interrupt_deadline);
        }
        next
    }

    async fn check_deadlines(&mut self) {
        let now = Instant::now();
        if self.kill_at.is_some_and(|at| at <= now) {
            self.kill_at = None;
            self.kill("term grace expired").await;
            return;
        }
        if self.killed {
            return;
        }
        if self.handshake_deadline.is_some_and(|at| at <= now) {
            self.handshake_deadline = None;
            let timeout = self.shared.config.timeouts.handshake;
            self.terminate(format!("no hello within the handshake timeout of {timeout:?}")).await;
            return;
        }
        if self.phase == Phase::Running && !self.signalled {
            if let Some(after) = self.hung_after {
                if self.last_frame_at + after <= now {
                    // Our own stall (a full event channel) must not count
                    // against the worker: read what it sent meanwhile first.
                    self.read_socket().await;
                    if self.last_frame_at + after <= Instant::now() && !self.exited {
                        self.note_death(format!("hung: no frame for {after:?}"));
                        self.kill(&format!("hung: no frame for {after:?}")).await;
                        return;
                    }
                }
            }
        }
        if self.shutdown_deadline.is_some_and(|at| at <= now) {
            self.shutdown_deadline = None;
            if self.in_flight.is_empty() || !self.capabilities.interrupt {
                self.terminate("the shutdown deadline passed".to_owned()).await;
            } else {
                let keys: Vec<JobKey> = self.in_flight.values().map(|f| f.key).collect();
                for key in keys {
                    self.interrupt(key, "shutdown").await;
                }
            }
        }
        let mut deadline_passed = Vec::new();
        let mut grace_expired = None;
        for in_flight in self.in_flight.values() {
            if in_flight.deferred.is_some() {
                continue;
            }
            if !in_flight.interrupted && in_flight.deadline.is_some_and(|at| at <= now) {
                deadline_passed.push(in_flight.key);
            }
            if in_flight.interrupt_deadline.is_some_and(|at| at <= now) {
                grace_expired = Some(in_flight.key);
            }
        }
        for key in deadline_passed {
            self.interrupt(key, "deadline").await;
        }
        if let Some(key) = grace_expired {
            for in_flight in self.in_flight.values_mut() {
                in_flight.interrupt_deadline = None;
            }
            let grace = self.shared.config.timeouts.interrupt_grace;
            self.terminate(format!("{key} did not stop within the interrupt grace of {grace:?}")).await;
        }
    }

    // ----- stopping -----------------------------------------------------

    fn note_death(&mut self, reason: String) {
        if self.death_reason.is_none() {
            self.death_reason = Some(reason);
        }
        self.shared.mark_not_ready(self.slot);
    }

    async fn escalation_event(&self, step: EscalationStep, reason: &str) {
        self.shared
            .events
            .send(Event::Escalation { target: self.source.clone(), step, reason: reason.to_owned() })
            .await;
    }

    /// SIGTERM to the group now, SIGKILL after the term grace.
    async fn terminate(&mut self, reason: String) {
        if self.signalled || self.reaped {
            self.note_death(reason);
            return;
        }
        self.note_death(reason.clone());
        self.signalled = true;
        self.escalation_event(EscalationStep::Sigterm, &reason).await;
        self.process.signal_group(Signal::TERM);
        self.kill_at = Some(Instant::now() + self.shared.config.timeouts.term_grace);
    }

    /// SIGKILL to the group now.
    async fn kill(&mut self, reason: &str) {
        if self.killed || self.reaped {
            self.note_death(reason.to_owned());
            return;
        }
        self.note_death(reason.to_owned());
        self.signalled = true;
        self.killed = true;
        self.kill_at = None;
        self.escalation_event(EscalationStep::Sigkill, reason).await;
        self.process.signal_group(Signal::KILL);
    }

    /// The worker broke the protocol: close the socket, then SIGTERM and
    /// SIGKILL.
    async fn protocol_error(&mut self, reason: String) {
        self.socket = None;
        self.terminate(format!("protocol error: {reason}")).await;
    }

    async fn interrupt(&mut self, key: JobKey, reason: &str) {
        let Some(in_flight) = self.in_flight.get_mut(&key.job_id) else { return };
        if in_flight.key != key || in_flight.interrupted || in_flight.deferred.is_some() {
            return;
        }
        in_flight.interrupted = true;
        if !self.capabilities.interrupt || self.socket.is_none() || self.socket_write_broken {
            self.terminate(format!("{key} interrupted ({reason}) and the worker cannot be interrupted")).await;
            return;
        }
        in_flight.interrupt_deadline = Some(Instant::now() + self.shared.config.timeouts.interrupt_grace);
        let frame = Interrupt { job_id: key.job_id, attempt: key.attempt, reason: reason.to_owned() };
        self.push_frame(&frame, Vec::new());
        self.escalation_event(EscalationStep::InterruptSent, &format!("{key}: {reason}")).await;
    }

    // ----- the inbox ----------------------------------------------------

    async fn take_inbox(&mut self) {
        let inbox = self.shared.take_inbox(self.slot);
        if inbox.kill {
            self.kill("the pool is being killed").await;
        }
        self.backlog.extend(inbox.jobs);
        self.send_backlog().await;
        for (key, reason) in inbox.interrupts {
            self.interrupt(key, &reason).await;
        }
        if let Some(peek) = inbox.peek {
            self.send_peek(peek);
        }
        if let Some(deadline) = inbox.shutdown {
            self.begin_shutdown(deadline).await;
        }
    }

    /// Sends a peek, or drops it (the caller hears the worker is gone) when
    /// the worker cannot be asked any more.
    fn send_peek(&mut self, request: PeekRequest) {
        let can_ask = self.phase == Phase::Running
            && self.capabilities.peek
            && self.socket.is_some()
            && !self.socket_write_broken
            && !self.signalled;
        assert!(self.peek_pending.is_none(), "the pool hands a worker one peek at a time");
        if !can_ask {
            self.shared.peek_done(self.slot);
            return;
        }
        self.last_peek_request_id += 1;
        let request_id = self.last_peek_request_id;
        self.push_frame(&Peek { request_id, query: request.query }, Vec::new());
        self.peek_pending = Some((request_id, request.reply));
    }

    async fn begin_shutdown(&mut self, deadline: SystemTime) {
        if self.shutdown_sent || self.signalled {
            return;
        }
        self.shutdown_sent = true;
        self.shared.mark_not_ready(self.slot);
        if self.phase == Phase::Handshaking {
            self.terminate("the pool is stopping".to_owned()).await;
            return;
        }
        let remaining = deadline.duration_since(SystemTime::now()).unwrap_or_default();
        self.shutdown_deadline = Some(Instant::now() + remaining);
        let shutdown = Shutdown { deadline_unix_ms: unix_ms(deadline), reason: "pool_stopped".to_owned() };
        self.push_frame(&shutdown, Vec::new());
    }

    /// Encodes backlog jobs while the send buffer takes them.
    async fn send_backlog(&mut self) {
        while !self.backlog.is_empty() {
            if self.signalled || self.socket.is_none() || self.socket_write_broken {
                // The worker is going away: these jobs never reach it.
                return;
            }
            if self.outgoing.pending_bytes() >= DEFAULT_SEND_BUFFER_LIMIT_BYTES {
                // Full: the rest waits for a flush (`push` would refuse).
                return;
            }
            let queued = self.backlog.pop_front().expect("not empty");
            let key = queued.job.key();
            let JobToRun { job_id, attempt, queue, kind, payload, checkpoint, progress, deadline } = queued.job;
            let inline_room = u64::from(self.outgoing.peer_max_frame_bytes()).saturating_sub(
                (HEADER_BYTES + 256 + queue.len() + kind.len() + checkpoint.as_ref().map_or(0, Vec::len)) as u64,
            );
            let wire = match prepare_payload(
                payload,
                self.capabilities.fd_payloads,
                self.fd_threshold_bytes,
                inline_room,
                job_id,
            ) {
                Ok(wire) => wire,
                Err(problem) => {
                    let outcome = Outcome::Failed { error: problem.message, retryable: problem.retryable, exit: None };
                    self.emit_outcome(key, outcome).await;
                    continue;
                }
            };
            let (payload, fds) = match wire {
                WirePayload::Inline(bytes) => (corvee_proto::Payload::Inline(bytes), Vec::new()),
                WirePayload::Fd { fd, length } => (corvee_proto::Payload::Fd { index: 0, length }, vec![fd]),
            };
            let frame = Job {
                job_id,
                attempt,
                queue,
                kind,
                deadline_unix_ms: deadline.map(unix_ms),
                payload,
                checkpoint,
                progress,
            };
            match self.try_push(&frame, fds) {
                Ok(()) => {
                    self.in_flight.insert(
                        job_id,
                        InFlight {
                            key,
                            deadline: queued.deadline,
                            interrupt_deadline: None,
                            interrupted: false,
                            deferred: None,
                        },
                    );
                }
                Err(error) => {
                    let outcome = Outcome::Failed {
                        error: format!("the job frame could not be encoded: {error}"),
                        retryable: false,
                        exit: None,
                    };
                    self.emit_outcome(key, outcome).await;
                }
            }
        }
    }

    // ----- writing ------------------------------------------------------

    fn try_push<M: corvee_proto::WireMessage>(&mut self, message: &M, fds: Vec<OwnedFd>) -> Result<(), EncodeError> {
        let before = self.outgoing.pending_bytes();
        self.outgoing.push(message, fds)?;
        let frame_bytes = (self.outgoing.pending_bytes() - before) as u64;
        self.shared.stats.largest_frame_sent.fetch_max(frame_bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Pushes a control frame; these are small, so a full buffer (only
    /// possible when the worker stopped reading) is the worker's problem.
    fn push_frame<M: corvee_proto::WireMessage>(&mut self, message: &M, fds: Vec<OwnedFd>) {
        if let Err(error) = self.try_push(message, fds) {
            self.note_death(format!("a control frame could not be queued: {error}"));
            self.socket_write_broken = true;
        }
    }

    async fn flush(&mut self) {
        loop {
            if !self.outgoing.is_empty() && !self.socket_write_broken {
                let Some(socket) = self.socket.as_ref() else { return };
                let before = self.outgoing.pending_bytes();
                let result = socket.try_io(Interest::WRITABLE, |fd| self.outgoing.send_to(fd));
                let written = before - self.outgoing.pending_bytes();
                self.shared.stats.bytes_sent.fetch_add(written as u64, Ordering::Relaxed);
                match result {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                    Err(error) => {
                        // The worker closed its end; reading will show why.
                        self.socket_write_broken = true;
                        self.note_death(format!("writing to the worker failed: {error}"));
                        return;
                    }
                }
            }
            if self.backlog.is_empty() || self.signalled || self.socket_write_broken || self.socket.is_none() {
                return;
            }
            self.send_backlog().await;
            if self.outgoing.is_empty() {
                return;
            }
        }
    }

    // ----- reading ------------------------------------------------------

    async fn read_socket(&mut self) {
        self.more_to_read = false;
        let mut read_total = 0;
        loop {
            let Some(socket) = self.socket.as_ref() else { return };
            if read_total >= SOCKET_READ_BUDGET_BYTES {
                self.more_to_read = true;
                return;
            }
            let decoder = &mut self.decoder;
            let result = match self.reaped {
                // The process is gone: read what it wrote straight from the
                // socket, whatever tokio's readiness says (the reactor may
                // not have seen the event for its last frames yet, and
                // `try_io` would not read at all).
                true => decoder.recv_from(socket.get_ref()),
                false => socket.try_io(Interest::READABLE, |fd| decoder.recv_from(fd)),
            };
            match result {
                Ok(0) => {
                    self.socket = None;
                    let reason = match self.decoder.finish() {
                        Ok(()) => "closed its socket".to_owned(),
                        Err(error) => format!("closed its socket: {error}"),
                    };
                    self.process_frames().await;
                    self.note_death(reason);
                    if self.kill_at.is_none() && !self.killed {
                        self.kill_at = Some(Instant::now() + self.shared.config.timeouts.term_grace);
                    }
                    return;
                }
                Ok(count) => {
                    read_total += count;
                    self.shared.stats.bytes_received.fetch_add(count as u64, Ordering::Relaxed);
                    if !self.process_frames().await {
                        return;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    self.protocol_error(format!("reading the socket failed: {error}")).await;
                    return;
                }
            }
        }
    }

    /// Handles every whole frame in the decoder. False if the connection
    /// was dropped.
    async fn process_frames(&mut self) -> bool {
        loop {
            match self.decoder.next_message() {
                Ok(Some(received)) => {
                    self.last_frame_at = Instant::now();
                    if !self.handle_message(received).await {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(error) => {
                    self.decode_error(error).await;
                    return false;
                }
            }
        }
    }

    async fn decode_error(&mut self, error: DecodeError) {
        self.protocol_error(error.to_string()).await;
    }

    async fn handle_message(&mut self, mut received: Received) -> bool {
        if self.phase == Phase::Handshaking {
            let Message::Hello(hello) = &received.message else {
                let found = received.message.message_type();
                self.protocol_error(format!("expected hello as the first frame, got {found:?}")).await;
                return false;
            };
            return self.handshake(hello.clone()).await;
        }
        let key = received.message.job_attempt().map(|(job_id, attempt)| JobKey { job_id, attempt });
        match received.message {
            Message::Heartbeat(_) => {}
            Message::Goodbye(goodbye) => {
                let reason = match goodbye.reason {
                    Some(reason) => format!("said goodbye ({reason})"),
                    None => "said goodbye".to_owned(),
                };
                self.note_death(reason);
                if self.kill_at.is_none() && !self.killed {
                    self.kill_at = Some(Instant::now() + self.shared.config.timeouts.term_grace);
                }
            }
            Message::Log(log) => {
                if let Some(key) = key {
                    if !self.is_outstanding(key) {
                        self.stale(key, "log").await;
                        return true;
                    }
                }
                let job = key;
                let text = bound_line(log.text, self.shared.config.max_line_bytes);
                self.log_line(job, LogStream::Protocol(log.level), text);
            }
            Message::Progress(progress) => {
                let key = key.expect("progress names its attempt");
                if !self.is_outstanding(key) {
                    self.stale(key, "progress").await;
                    return true;
                }
                let progress = ProgressState { done: progress.done, total: progress.total, message: progress.message };
                self.shared.events.offer(Event::Progress { job: key, progress });
            }
            Message::Checkpoint(checkpoint) => {
                let key = key.expect("checkpoint names its attempt");
                if !self.is_outstanding(key) {
                    self.stale(key, "checkpoint").await;
                    return true;
                }
                self.shared.events.send(Event::Checkpoint { job: key, checkpoint: checkpoint.checkpoint }).await;
            }
            Message::Complete(ref complete) => {
                let result = match complete.result.clone() {
                    None => None,
                    Some(corvee_proto::Payload::Inline(bytes)) => Some(JobResult::Inline(bytes)),
                    Some(corvee_proto::Payload::Fd { index, length }) => match received.take_fd(index) {
                        Some(fd) => Some(JobResult::Fd { fd, length }),
                        None => {
                            self.protocol_error("a complete frame's result fd is missing".to_owned()).await;
                            return false;
                        }
                    },
                };
                self.terminal(key.expect("complete names its attempt"), "complete", Outcome::Completed { result })
                    .await;
            }
            Message::Fail(fail) => {
                let outcome = Outcome::Failed { error: fail.error, retryable: fail.retryable, exit: None };
                self.terminal(key.expect("fail names its attempt"), "fail", outcome).await;
            }
            Message::Snooze(snooze) => {
                let outcome = Outcome::Snoozed { delay: Duration::from_millis(snooze.delay_ms) };
                self.terminal(key.expect("snooze names its attempt"), "snooze", outcome).await;
            }
            Message::Interrupted(interrupted) => {
                let outcome =
                    Outcome::Interrupted { checkpoint: interrupted.checkpoint, progress: interrupted.progress };
                self.terminal(key.expect("interrupted names its attempt"), "interrupted", outcome).await;
            }
            Message::PeekReply(reply) => {
                // A reply for no pending peek is ignored, like a stale reply.
                if self.peek_pending.as_ref().is_some_and(|(request_id, _)| *request_id == reply.request_id) {
                    let (_, answer) = self.peek_pending.take().expect("checked above");
                    // Free the worker first: the caller may ask again the
                    // moment it has the answer.
                    self.shared.peek_done(self.slot);
                    // The caller may have stopped waiting (timeout).
                    let _ = answer.send(reply.result);
                }
            }
            other => {
                let found = other.message_type();
                self.protocol_error(format!("unexpected {found:?} after the handshake")).await;
                return false;
            }
        }
        true
    }

    async fn handshake(&mut self, hello: corvee_proto::Hello) -> bool {
        self.handshake_deadline = None;
        if self.decoder.buffered_bytes() > 0 || self.decoder.queued_fds() > 0 {
            self.protocol_error("sent frames after its hello before the welcome".to_owned()).await;
            return false;
        }
        let config = &self.shared.config;
        let settings = HandshakeSettings {
            worker_id: self.worker,
            max_window: config.window,
            kinds: &config.kinds,
            max_frame_bytes: config.max_frame_bytes,
            heartbeat_interval: config.timeouts.heartbeat_interval,
            payload_fd_threshold_bytes: config.payload_fd_threshold_bytes,
            interrupt_grace: config.timeouts.interrupt_grace,
        };
        let stopping = self.shared.is_stopping();
        let negotiated = if stopping {
            Err(corvee_proto::Refusal {
                reason: "shutting_down".to_owned(),
                message: "the pool is stopping; this worker is not needed".to_owned(),
                min_protocol_version: corvee_proto::MIN_PROTOCOL_VERSION,
                protocol_version: corvee_proto::PROTOCOL_VERSION,
            })
        } else {
            negotiate(&hello, &settings)
        };
        match negotiated {
            Err(refusal) => {
                let reason = format!("refused ({}): {}", refusal.reason, refusal.message);
                self.push_frame(&refusal, Vec::new());
                self.flush().await;
                // The refusal is written (or the worker is gone); close.
                self.socket = None;
                self.note_death(reason);
                self.kill_at = Some(Instant::now() + self.shared.config.timeouts.term_grace);
                false
            }
            Ok(negotiated) => {
                let welcome = negotiated.welcome;
                self.outgoing.set_peer_max_frame_bytes(hello.max_frame_bytes);
                self.decoder = FrameDecoder::new(config.max_frame_bytes).receiving_as(Peer::Supervisor);
                self.capabilities = welcome.capabilities;
                self.fd_threshold_bytes = u64::from(welcome.payload_fd_threshold_bytes);
                if welcome.heartbeat_interval_ms > 0 {
                    self.hung_after = Some(Duration::from_millis(u64::from(welcome.heartbeat_interval_ms)) * 3);
                }
                self.push_frame(&welcome, Vec::new());
                self.phase = Phase::Running;
                self.last_frame_at = Instant::now();
                let ready = ReadyWorker {
                    worker: self.worker,
                    window: welcome.window,
                    kinds: negotiated.kinds,
                    answers_peeks: welcome.capabilities.peek,
                };
                self.shared.mark_ready(self.slot, ready);
                self.shared
                    .events
                    .send(Event::WorkerReady {
                        pool: self.shared.name.clone(),
                        worker: self.worker,
                        worker_name: hello.worker_name,
                        window: welcome.window,
                        capabilities: welcome.capabilities,
                    })
                    .await;
                true
            }
        }
    }

    fn is_outstanding(&self, key: JobKey) -> bool {
        self.in_flight.get(&key.job_id).is_some_and(|f| f.key == key && f.deferred.is_none())
    }

    async fn stale(&self, key: JobKey, message: &'static str) {
        self.shared
            .events
            .send(Event::StaleReply { pool: self.shared.name.clone(), worker: self.worker, job: key, message })
            .await;
    }

    /// A terminal reply: report it now, or after the reaping if a signal
    /// already went to the worker.
    async fn terminal(&mut self, key: JobKey, message: &'static str, outcome: Outcome) {
        if !self.is_outstanding(key) {
            self.stale(key, message).await;
            return;
        }
        if self.signalled && !self.exited {
            self.in_flight.get_mut(&key.job_id).expect("outstanding").deferred = Some(outcome);
            return;
        }
        self.in_flight.remove(&key.job_id);
        self.emit_outcome(key, outcome).await;
    }

    async fn emit_outcome(&self, key: JobKey, outcome: Outcome) {
        self.shared.release(self.slot, key);
        self.shared.events.send(Event::Outcome { job: key, outcome }).await;
    }

    // ----- output -------------------------------------------------------

    async fn read_output(&mut self, stream: LogStream) {
        let mut lines = std::mem::take(&mut self.line_buffer);
        let reader = if stream == LogStream::Stdout { &mut self.stdout } else { &mut self.stderr };
        reader.read_available(&mut lines);
        let job = self.sole_job();
        for text in lines.drain(..) {
            self.log_line(job, stream, text);
        }
        self.line_buffer = lines;
    }

    /// The attempt output lines belong to: the only one running, if so.
    fn sole_job(&self) -> Option<JobKey> {
        if self.in_flight.len() == 1 {
            self.in_flight.values().next().map(|f| f.key)
        } else {
            None
        }
    }

    fn log_line(&self, job: Option<JobKey>, stream: LogStream, text: String) {
        let line = LogLine { job, source: self.source.clone(), stream, timestamp: SystemTime::now(), text };
        if let Some(store) = &self.shared.log_store {
            // A full disk must not stop the worker; the line is still in the
            // event.
            let _ = store.append(&line);
        }
        self.shared.events.offer(Event::Log(line));
    }

    // ----- the end ------------------------------------------------------

    async fn finish(mut self) -> SessionEnd {
        self.shared.mark_not_ready(self.slot);
        let exit = self.process.kill_group_and_reap().await;
        self.reaped = true;
        // The process is gone: whatever it wrote before is still in the
        // socket and the pipes. Read it without waiting for EOF (a killed
        // grandchild may hold the pipes open a moment longer).
        self.signalled = false;
        self.exited = true;
        if self.socket.is_some() {
            self.read_socket().await;
            while self.more_to_read {
                self.read_socket().await;
            }
        }
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let mut lines = Vec::new();
            let reader = if stream == LogStream::Stdout { &mut self.stdout } else { &mut self.stderr };
            reader.drain_after_exit(&mut lines);
            let job = self.sole_job();
            for text in lines {
                self.log_line(job, stream, text);
            }
        }
        let reason = self.death_reason.clone().unwrap_or_else(|| "exited".to_owned());
        let lost_reason = format!("{} (pid {}) {reason}; {exit}", self.worker, self.pid);
        let mut in_flight: Vec<InFlight> = self.in_flight.drain().map(|(_, f)| f).collect();
        in_flight.sort_by_key(|f| f.key);
        for attempt in in_flight {
            let outcome = attempt.deferred.unwrap_or_else(|| Outcome::Lost { reason: lost_reason.clone() });
            self.emit_outcome(attempt.key, outcome).await;
        }
        let mut never_sent: Vec<QueuedJob> = self.backlog.drain(..).collect();
        never_sent.extend(self.shared.take_inbox(self.slot).jobs);
        for queued in never_sent {
            let reason = format!("{} (pid {}) {reason} before the job was sent to it", self.worker, self.pid);
            self.emit_outcome(queued.job.key(), Outcome::NotStarted { reason }).await;
        }
        SessionEnd {
            pid: self.pid,
            exit,
            reason,
            handshake_completed: self.phase == Phase::Running,
            uptime: self.process.started_at().elapsed(),
        }
    }
}

async fn readable(socket: Option<&AsyncFd<OwnedFd>>) {
    match socket {
        Some(socket) => {
            if let Ok(mut guard) = socket.readable().await {
                guard.retain_ready();
            }
        }
        None => std::future::pending().await,
    }
}

async fn writable(socket: Option<&AsyncFd<OwnedFd>>) {
    match socket {
        Some(socket) => {
            if let Ok(mut guard) = socket.writable().await {
                guard.retain_ready();
            }
        }
        None => std::future::pending().await,
    }
}

/// Cuts a protocol log line to the line limit, as output lines are.
fn bound_line(mut text: String, max_line_bytes: usize) -> String {
    if text.len() > max_line_bytes {
        let mut cut = max_line_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(crate::output::LINE_TRUNCATED_MARKER);
    }
    text
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}
