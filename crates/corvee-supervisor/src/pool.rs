//! A pool of identical worker processes: [`WorkerPool`] routes submitted
//! attempts to the process with the most free room in its window, routes
//! interrupts to the process running the attempt, restarts dead processes
//! with backoff, answers peeks through one of its workers, and stops
//! gracefully or at once.
//!
//! Each process slot is one tokio task (`run_slot`) that starts a worker,
//! runs its session (`worker.rs`) until the process is reaped, and starts the
//! next one. The pool and the slot tasks share one small lock: the
//! accounting of who runs what and each slot's inbox. Submitting never
//! blocks and never waits for a worker: it succeeds only when a ready worker
//! has room, so the inboxes are bounded by the windows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use corvee_proto::PeekResult;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::restart::{RestartTracker, RunSummary};
use crate::worker::run_worker;
use crate::{
    ConfigError, Event, EventSink, InterruptError, JobKey, JobToRun, LogStore, PeekError, PoolConfig, SubmitError,
    WorkerId, MAX_WINDOW,
};

/// Worker ids are unique within the process, across pools.
static NEXT_WORKER_ID: AtomicU64 = AtomicU64::new(1);

/// A job accepted by `submit`, waiting in a slot's inbox.
#[derive(Debug)]
pub(crate) struct QueuedJob {
    pub(crate) job: JobToRun,
    /// The job's deadline on the monotonic clock.
    pub(crate) deadline: Option<Instant>,
}

/// A peek waiting to be sent, and where its answer goes.
#[derive(Debug)]
pub(crate) struct PeekRequest {
    pub(crate) query: Vec<u8>,
    /// Dropped unanswered when the worker goes away.
    pub(crate) reply: oneshot::Sender<PeekResult>,
}

/// Which worker [`WorkerPool::peek`] asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeekTarget {
    /// Any ready worker that answers peeks and is not answering one now.
    /// Right for questions every worker answers alike (its version, what
    /// its shared cache holds).
    AnyWorker,
    /// This worker process: for questions about one process's state. Ids
    /// come from [`Event::WorkerStarted`] and [`Event::WorkerReady`].
    Worker(WorkerId),
}

/// What the pool asks of a slot's session.
#[derive(Debug, Default)]
pub(crate) struct SlotInbox {
    pub(crate) jobs: Vec<QueuedJob>,
    pub(crate) interrupts: Vec<(JobKey, String)>,
    pub(crate) peek: Option<PeekRequest>,
    pub(crate) shutdown: Option<SystemTime>,
    pub(crate) kill: bool,
}

/// A worker that finished its handshake.
#[derive(Debug)]
pub(crate) struct ReadyWorker {
    pub(crate) worker: WorkerId,
    pub(crate) window: u32,
    pub(crate) kinds: Vec<String>,
    /// The welcome has the `peek` capability in use.
    pub(crate) answers_peeks: bool,
}

#[derive(Debug, Default)]
struct SlotState {
    ready: Option<ReadyWorker>,
    /// Attempts routed to this slot without an outcome yet.
    assigned: u32,
    /// A peek was handed to this slot's worker and it has not answered yet
    /// (the protocol allows one outstanding peek per worker).
    peek_busy: bool,
    inbox: SlotInbox,
}

#[derive(Debug)]
struct PoolState {
    slots: Vec<SlotState>,
    /// Running attempts by job id: (attempt, slot).
    running: HashMap<u64, (u32, usize)>,
    stopping: bool,
}

/// Counters of socket traffic, for benchmarks and tests.
#[derive(Debug, Default)]
pub(crate) struct PoolStats {
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) largest_frame_sent: AtomicU64,
}

/// What the socket carried so far, over all of a pool's workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketStats {
    /// Bytes the supervisor wrote.
    pub bytes_sent: u64,
    /// Bytes it read.
    pub bytes_received: u64,
    /// The largest frame it sent, header included.
    pub largest_frame_sent: u64,
}

/// The state the pool handle and its slot tasks share.
#[derive(Debug)]
pub(crate) struct PoolShared {
    pub(crate) name: Arc<str>,
    pub(crate) config: PoolConfig,
    state: Mutex<PoolState>,
    capacity_changed: Notify,
    pub(crate) slot_wakers: Vec<Notify>,
    stop_requested: watch::Sender<bool>,
    pub(crate) events: EventSink,
    pub(crate) log_store: Option<LogStore>,
    pub(crate) stats: PoolStats,
}

impl PoolShared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().expect("pool state lock")
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.lock().stopping
    }

    pub(crate) fn mark_ready(&self, slot: usize, ready: ReadyWorker) {
        {
            let mut state = self.lock();
            state.slots[slot].ready = Some(ready);
            state.slots[slot].peek_busy = false;
        }
        self.capacity_changed.notify_waiters();
    }

    /// The slot's worker answered its peek (or will never be asked it).
    pub(crate) fn peek_done(&self, slot: usize) {
        self.lock().slots[slot].peek_busy = false;
    }

    pub(crate) fn mark_not_ready(&self, slot: usize) {
        self.lock().slots[slot].ready = None;
    }

    pub(crate) fn take_inbox(&self, slot: usize) -> SlotInbox {
        std::mem::take(&mut self.lock().slots[slot].inbox)
    }

    /// An attempt has its outcome: free its place in the window.
    pub(crate) fn release(&self, slot: usize, key: JobKey) {
        {
            let mut state = self.lock();
            if state.running.get(&key.job_id) == Some(&(key.attempt, slot)) {
                state.running.remove(&key.job_id);
            }
            let assigned = &mut state.slots[slot].assigned;
            assert!(*assigned > 0, "released {key} from slot {slot} with nothing assigned");
            *assigned -= 1;
        }
        self.capacity_changed.notify_waiters();
    }
}

/// A pool of worker processes. See the module documentation.
///
/// Dropping the pool kills its workers (SIGKILL to each process group); the
/// slot tasks still reap them and report every attempt, as long as the
/// runtime runs. Prefer [`stop`](WorkerPool::stop).
#[derive(Debug)]
pub struct WorkerPool {
    shared: Arc<PoolShared>,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl WorkerPool {
    /// Starts `config.processes` workers. Events (outcomes included) go to
    /// `events`; log lines also to `log_store` when given. Must be called
    /// within a tokio runtime.
    pub fn start(
        config: PoolConfig,
        events: EventSink,
        log_store: Option<LogStore>,
    ) -> Result<WorkerPool, ConfigError> {
        validate(&config)?;
        let processes = config.processes;
        let (stop_requested, _) = watch::channel(false);
        let shared = Arc::new(PoolShared {
            name: Arc::from(config.name.as_str()),
            state: Mutex::new(PoolState {
                slots: (0..processes).map(|_| SlotState::default()).collect(),
                running: HashMap::new(),
                stopping: false,
            }),
            config,
            capacity_changed: Notify::new(),
            slot_wakers: (0..processes).map(|_| Notify::new()).collect(),
            stop_requested,
            events,
            log_store,
            stats: PoolStats::default(),
        });
        let tasks = (0..processes).map(|slot| tokio::spawn(run_slot(shared.clone(), slot))).collect();
        Ok(WorkerPool { shared, tasks: tokio::sync::Mutex::new(tasks) })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Hands an attempt to the ready worker with the most room that runs its
    /// kind. Never blocks; without room it returns the job in
    /// [`SubmitError::NoCapacity`]. Exactly one [`Event::Outcome`] follows
    /// every accepted attempt.
    pub fn submit(&self, job: JobToRun) -> Result<(), SubmitError> {
        let pool = || self.shared.name.to_string();
        let config = &self.shared.config;
        if !config.kinds.is_empty() && !config.kinds.contains(&job.kind) {
            return Err(SubmitError::UnknownKind { pool: pool(), job: Box::new(job) });
        }
        let slot = {
            let mut state = self.shared.lock();
            if state.stopping {
                return Err(SubmitError::Stopping { pool: pool(), job: Box::new(job) });
            }
            if let Some(&(running_attempt, _)) = state.running.get(&job.job_id) {
                return Err(SubmitError::AlreadyRunning { pool: pool(), running_attempt, job: Box::new(job) });
            }
            let mut best: Option<(usize, u32)> = None;
            let (mut any_ready, mut kind_run) = (false, false);
            for (index, slot) in state.slots.iter().enumerate() {
                let Some(ready) = &slot.ready else { continue };
                any_ready = true;
                if !ready.kinds.contains(&job.kind) {
                    continue;
                }
                kind_run = true;
                let free = ready.window.saturating_sub(slot.assigned);
                if free > 0 && best.is_none_or(|(_, most)| free > most) {
                    best = Some((index, free));
                }
            }
            let Some((slot, _)) = best else {
                // A pool's processes are alike: if none of those ready runs
                // the kind, waiting for room would wait forever.
                if any_ready && !kind_run {
                    return Err(SubmitError::UnknownKind { pool: pool(), job: Box::new(job) });
                }
                return Err(SubmitError::NoCapacity { pool: pool(), job: Box::new(job) });
            };
            let deadline = job
                .deadline
                .map(|deadline| Instant::now() + deadline.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO));
            state.running.insert(job.job_id, (job.attempt, slot));
            let slot_state = &mut state.slots[slot];
            slot_state.assigned += 1;
            slot_state.inbox.jobs.push(QueuedJob { job, deadline });
            slot
        };
        self.shared.slot_wakers[slot].notify_one();
        Ok(())
    }

    /// How many more attempts ready workers take right now, over all kinds.
    pub fn free_capacity(&self) -> usize {
        let state = self.shared.lock();
        if state.stopping {
            return 0;
        }
        state
            .slots
            .iter()
            .filter_map(|slot| slot.ready.as_ref().map(|ready| ready.window.saturating_sub(slot.assigned) as usize))
            .sum()
    }

    /// Attempts submitted and without an outcome yet.
    pub fn running(&self) -> usize {
        self.shared.lock().running.len()
    }

    /// Waits until some ready worker has room (or the pool is stopping).
    /// Cancel-safe; wrap it in a timeout to bound the wait.
    pub async fn wait_for_capacity(&self) {
        loop {
            let notified = self.shared.capacity_changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.free_capacity() > 0 || self.shared.is_stopping() {
                return;
            }
            notified.await;
        }
    }

    /// Interrupts an attempt: an `interrupt` frame, then — if it has not
    /// stopped within the interrupt grace — SIGTERM to its worker's process
    /// group, then SIGKILL after the term grace. A worker without the
    /// interrupt capability gets SIGTERM at once. Every step is reported as
    /// [`Event::Escalation`]; the attempt's outcome follows as usual.
    pub fn interrupt(&self, job_id: u64, attempt: u32, reason: &str) -> Result<(), InterruptError> {
        let slot = {
            let mut state = self.shared.lock();
            let slot = match state.running.get(&job_id) {
                Some(&(running_attempt, slot)) if running_attempt == attempt => slot,
                _ => return Err(InterruptError::NotRunning { job_id, attempt }),
            };
            state.slots[slot].inbox.interrupts.push((JobKey { job_id, attempt }, reason.to_owned()));
            slot
        };
        self.shared.slot_wakers[slot].notify_one();
        Ok(())
    }

    /// Asks a worker a read-only question (a `peek`) and waits up to
    /// `timeout` for its answer. `target` picks the worker: any ready one
    /// that answers peeks and is not busy with another, or a particular
    /// process. The query and the answer are bytes in a format the workers
    /// define.
    ///
    /// A worker has at most one peek outstanding: while it has not answered
    /// — even after this call timed out — it is [`PeekError::Busy`]. A
    /// worker's error answer is [`PeekError::Answered`].
    pub async fn peek(&self, target: PeekTarget, query: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, PeekError> {
        let pool = || self.shared.name.to_string();
        let (reply, answer) = oneshot::channel();
        let (slot, worker) = {
            let mut state = self.shared.lock();
            let slot = match target {
                PeekTarget::AnyWorker => state
                    .slots
                    .iter()
                    .position(|slot| !slot.peek_busy && slot.ready.as_ref().is_some_and(|ready| ready.answers_peeks))
                    .ok_or_else(|| PeekError::NoWorker { pool: pool() })?,
                PeekTarget::Worker(worker) => {
                    let slot = state
                        .slots
                        .iter()
                        .position(|slot| slot.ready.as_ref().is_some_and(|ready| ready.worker == worker))
                        .ok_or_else(|| PeekError::UnknownWorker { pool: pool(), worker })?;
                    let slot_state = &state.slots[slot];
                    if !slot_state.ready.as_ref().is_some_and(|ready| ready.answers_peeks) {
                        return Err(PeekError::NotSupported { pool: pool(), worker });
                    }
                    if slot_state.peek_busy {
                        return Err(PeekError::Busy { pool: pool(), worker });
                    }
                    slot
                }
            };
            let slot_state = &mut state.slots[slot];
            let worker = slot_state.ready.as_ref().expect("chosen among ready workers").worker;
            slot_state.peek_busy = true;
            slot_state.inbox.peek = Some(PeekRequest { query, reply });
            (slot, worker)
        };
        self.shared.slot_wakers[slot].notify_one();
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(PeekResult::Ok(bytes))) => Ok(bytes),
            Ok(Ok(PeekResult::Error(message))) => Err(PeekError::Answered { pool: pool(), worker, message }),
            Ok(Err(_unanswered)) => Err(PeekError::WorkerGone { pool: pool(), worker }),
            Err(_elapsed) => Err(PeekError::Timeout { pool: pool(), worker, timeout }),
        }
    }

    /// Socket traffic so far.
    pub fn socket_stats(&self) -> SocketStats {
        let stats = &self.shared.stats;
        SocketStats {
            bytes_sent: stats.bytes_sent.load(Ordering::Relaxed),
            bytes_received: stats.bytes_received.load(Ordering::Relaxed),
            largest_frame_sent: stats.largest_frame_sent.load(Ordering::Relaxed),
        }
    }

    /// Stops gracefully: no more jobs are taken, each worker gets `shutdown`
    /// and may finish its attempts until `grace` has passed; then what still
    /// runs is interrupted (and escalated, see [`interrupt`]). Returns when
    /// every worker process is reaped and every attempt has its outcome.
    /// Keep reading events meanwhile: outcomes wait for room in the channel.
    ///
    /// [`interrupt`]: WorkerPool::interrupt
    pub async fn stop(&self, grace: Duration) {
        let deadline = SystemTime::now() + grace;
        self.request_stop(|inbox| inbox.shutdown = Some(deadline));
        self.join().await;
    }

    /// Kills every worker at once (SIGKILL to each process group), reaps
    /// them and reports their attempts as lost. Returns when done.
    pub async fn kill(&self) {
        self.request_stop(|inbox| inbox.kill = true);
        self.join().await;
    }

    fn request_stop(&self, order: impl Fn(&mut SlotInbox)) {
        {
            let mut state = self.shared.lock();
            state.stopping = true;
            for slot in &mut state.slots {
                order(&mut slot.inbox);
                slot.ready = None;
            }
        }
        self.shared.stop_requested.send_replace(true);
        for waker in &self.shared.slot_wakers {
            waker.notify_one();
        }
        self.shared.capacity_changed.notify_waiters();
    }

    async fn join(&self) {
        let mut tasks = self.tasks.lock().await;
        for task in tasks.drain(..) {
            if let Err(error) = task.await {
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        if !self.shared.is_stopping() {
            self.request_stop(|inbox| inbox.kill = true);
        }
    }
}

fn validate(config: &PoolConfig) -> Result<(), ConfigError> {
    let problem = if config.name.is_empty() {
        Some("the pool name is empty".to_owned())
    } else if config.argv.is_empty() || config.argv[0].is_empty() {
        Some("argv is empty; give the worker program and its arguments".to_owned())
    } else if config.processes == 0 {
        Some("processes is 0; a pool needs at least one".to_owned())
    } else if config.window == 0 || config.window > MAX_WINDOW {
        Some(format!("window {} is outside 1..={MAX_WINDOW}", config.window))
    } else if !(corvee_proto::HANDSHAKE_MAX_FRAME_BYTES..=corvee_proto::PROTOCOL_MAX_FRAME_BYTES)
        .contains(&config.max_frame_bytes)
    {
        Some(format!(
            "max_frame_bytes {} is outside {}..={}",
            config.max_frame_bytes,
            corvee_proto::HANDSHAKE_MAX_FRAME_BYTES,
            corvee_proto::PROTOCOL_MAX_FRAME_BYTES
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError { pool: config.name.clone(), problem }),
        None => Ok(()),
    }
}

/// One process slot: start a worker, run it until reaped, back off, again.
async fn run_slot(shared: Arc<PoolShared>, slot: usize) {
    let mut tracker = RestartTracker::new(shared.config.restart.clone());
    let mut stop = shared.stop_requested.subscribe();
    loop {
        if *stop.borrow() {
            return;
        }
        let worker = WorkerId(NEXT_WORKER_ID.fetch_add(1, Ordering::Relaxed));
        let run = match run_worker(&shared, slot, worker).await {
            Ok(end) => {
                shared
                    .events
                    .send(Event::WorkerExited {
                        pool: shared.name.clone(),
                        worker,
                        pid: end.pid,
                        exit: end.exit,
                        reason: end.reason,
                        uptime: end.uptime,
                    })
                    .await;
                RunSummary { handshake_completed: end.handshake_completed, uptime: end.uptime }
            }
            Err(error) => {
                shared
                    .events
                    .send(Event::WorkerSpawnFailed { pool: shared.name.clone(), error: error.to_string() })
                    .await;
                RunSummary { handshake_completed: false, uptime: Duration::ZERO }
            }
        };
        if *stop.borrow() {
            return;
        }
        let decision = tracker.record(run);
        if decision.crash_looping {
            shared
                .events
                .send(Event::CrashLooping {
                    pool: shared.name.clone(),
                    slot,
                    consecutive_failures: decision.consecutive_failures,
                    next_restart_in: decision.delay,
                })
                .await;
        }
        shared
            .events
            .send(Event::RestartScheduled {
                pool: shared.name.clone(),
                slot,
                delay: decision.delay,
                consecutive_failures: decision.consecutive_failures,
            })
            .await;
        tokio::select! {
            () = tokio::time::sleep(decision.delay) => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}
