//! The state machine: [`CoreState`] holds every job and queue with the
//! indexes that keep leasing, scheduling and expiry O(log n), and
//! [`CoreState::apply_record`] is the one place state changes. Commands
//! (`enqueue.rs`, `lease.rs`, `outcome.rs`, `control.rs`, `expiry.rs`,
//! `retention.rs`) validate a request, build the records describing its
//! effect, and apply them through `apply_record` — the same function replay
//! uses, so replaying the journal rebuilds the same state by construction.
//!
//! Time-driven changes are not records: a pending job's visible state
//! (scheduled, available, retryable) follows from its `run_at` and the
//! time. The indexes keep pending jobs whose time has not come in `timers`
//! and move them to their queue's `available` set as the clock passes
//! their `run_at` ([`CoreState::advance`]).
//!
//! A few running-attempt facts are deliberately volatile, changed without a
//! record and lost on restart: lease deadlines extended by heartbeats,
//! progress between checkpoints, and the "kill requested" mark of an
//! expired supervised lease. After a restart every running attempt is
//! recovered as lost (`RecoverNode`), so none of them matters then.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crate::command::{Action, Applied, Command, Reply};
use crate::error::CoreError;
use crate::ids::{Attempt, JobId, Kind, QueueName, Timestamp};
use crate::job::{AttemptError, JobState, Limits, Payload};
use crate::queue::QueueConfig;
use crate::record::Record;
use crate::table::{
    Job, JobTable, KindId, Phase, QueueId, FLAG_CANCEL_REQUESTED, FLAG_KILL_REQUESTED, FLAG_RETRY_WAIT,
};

/// A record that does not fit the state it is applied to: the journal is
/// inconsistent with itself (damage that checksums missed, or a bug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record does not apply: {reason}")]
pub struct ApplyError {
    /// What did not fit.
    pub reason: String,
}

fn inconsistent(reason: impl Into<String>) -> ApplyError {
    ApplyError { reason: reason.into() }
}

/// One queue's settings and indexes.
#[derive(Clone, Debug)]
pub(crate) struct QueueState {
    pub(crate) name: QueueName,
    pub(crate) config: QueueConfig,
    /// Available jobs: (priority, id) — best first, FIFO within a priority.
    pub(crate) available: BTreeSet<(u32, u64)>,
    /// Pending jobs in `timers` (not yet due), by flag.
    pub(crate) scheduled: u64,
    pub(crate) retryable: u64,
    pub(crate) running: u64,
    /// Finished jobs in finish order, per state, for retention.
    pub(crate) completed: VecDeque<(Timestamp, JobId)>,
    pub(crate) cancelled: VecDeque<(Timestamp, JobId)>,
    pub(crate) discarded: VecDeque<(Timestamp, JobId)>,
    pub(crate) completed_count: u64,
    pub(crate) cancelled_count: u64,
    pub(crate) discarded_count: u64,
    /// What the finished jobs hold: see [`Job::held_bytes`].
    pub(crate) finished_bytes: u64,
    /// See [`QueueStats::finished_since_open`](crate::QueueStats).
    pub(crate) finished_since_open: [u64; 3],
    /// Compaction is deleting finished jobs down to 7/8 of the byte limit
    /// (volatile: it only steers compaction, whose deletions are journaled).
    pub(crate) trimming_bytes: bool,
}

impl QueueState {
    fn new(name: QueueName, config: QueueConfig) -> QueueState {
        QueueState {
            name,
            config,
            available: BTreeSet::new(),
            scheduled: 0,
            retryable: 0,
            running: 0,
            completed: VecDeque::new(),
            cancelled: VecDeque::new(),
            discarded: VecDeque::new(),
            completed_count: 0,
            cancelled_count: 0,
            discarded_count: 0,
            finished_bytes: 0,
            finished_since_open: [0; 3],
            trimming_bytes: false,
        }
    }

    /// The retention list of a finished state.
    pub(crate) fn finished_list(&mut self, phase: Phase) -> &mut VecDeque<(Timestamp, JobId)> {
        match phase {
            Phase::Completed => &mut self.completed,
            Phase::Cancelled => &mut self.cancelled,
            Phase::Discarded => &mut self.discarded,
            Phase::Pending | Phase::Running => unreachable!("not a finished state"),
        }
    }

    /// Pending and running jobs: what counts against the capacity.
    pub(crate) fn unfinished(&self) -> u64 {
        self.available.len() as u64 + self.scheduled + self.retryable + self.running
    }
}

/// Every job and queue, with indexes. See the module documentation.
#[derive(Clone, Debug)]
pub struct CoreState {
    pub(crate) limits: Limits,
    pub(crate) jobs: JobTable,
    /// The id the next enqueued job gets.
    pub(crate) next_id: u64,
    /// The latest time seen: pending jobs due by then are in `available`.
    pub(crate) clock: Timestamp,
    pub(crate) queues: Vec<QueueState>,
    pub(crate) queue_ids: HashMap<String, QueueId>,
    pub(crate) kinds: Vec<Kind>,
    pub(crate) kind_ids: HashMap<String, KindId>,
    /// Pending jobs not yet due: (run_at, id).
    pub(crate) timers: BTreeSet<(Timestamp, JobId)>,
    /// Running jobs: (lease deadline, id).
    pub(crate) deadlines: BTreeSet<(Timestamp, JobId)>,
    /// Unique keys in use: (queue, key) → (job, when the key frees up).
    pub(crate) unique: HashMap<(QueueId, String), (JobId, Option<Timestamp>)>,
}

impl Default for CoreState {
    fn default() -> CoreState {
        CoreState::new(Limits::default())
    }
}

impl CoreState {
    /// An empty state with these limits.
    pub fn new(limits: Limits) -> CoreState {
        CoreState {
            limits,
            jobs: JobTable::default(),
            next_id: 1,
            clock: Timestamp(0),
            queues: Vec::new(),
            queue_ids: HashMap::new(),
            kinds: Vec::new(),
            kind_ids: HashMap::new(),
            timers: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            unique: HashMap::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many jobs exist (in any state).
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// The id the next enqueued job will get.
    pub fn next_id(&self) -> JobId {
        JobId(self.next_id)
    }

    /// Handles one command at time `now`: validates it, applies the records
    /// describing its effect, and returns them with the reply and the
    /// actions. A refused command changes nothing.
    pub fn apply(&mut self, command: Command, now: Timestamp) -> Result<Applied, CoreError> {
        self.advance(now);
        let now = self.clock;
        match command {
            Command::Enqueue { jobs } => self.enqueue(jobs, now),
            Command::Lease { queues, limit, holder } => self.lease(&queues, limit, holder, now),
            Command::Heartbeat { job, attempt } => self.heartbeat(job, attempt, now),
            Command::Progress { job, attempt, progress } => self.progress(job, attempt, progress),
            Command::Checkpoint { job, attempt, checkpoint, progress } => {
                self.checkpoint(job, attempt, checkpoint, progress)
            }
            Command::Complete { job, attempt, result, progress } => self.complete(job, attempt, result, progress, now),
            Command::Fail { job, attempt, error, retryable, progress } => {
                self.fail(job, attempt, error, retryable, None, progress, now)
            }
            Command::Snooze { job, attempt, delay_ms } => self.snooze(job, attempt, delay_ms, now),
            Command::Release { job, attempt } => self.release(job, attempt),
            Command::Interrupted { job, attempt, cause, checkpoint, progress } => {
                self.interrupted(job, attempt, cause, checkpoint, progress, now)
            }
            Command::Cancel { job } => self.cancel(job, now),
            Command::Retry { job } => self.retry(job, now),
            Command::Pause { queue } => self.set_paused(queue, true),
            Command::Resume { queue } => self.set_paused(queue, false),
            Command::Configure { queue, config } => self.configure(queue, config),
            Command::Purge { queue } => self.purge(&queue),
            Command::Move { job, to } => self.move_job(job, to),
            Command::ExpireLeases => self.expire_leases(now),
            Command::RecoverNode { node } => self.recover_node(node, now),
            Command::Compact => self.compact(now),
        }
    }

    /// Moves the clock to `now` (never backwards) and makes pending jobs
    /// due by then available.
    pub fn advance(&mut self, now: Timestamp) {
        if now > self.clock {
            self.clock = now;
        }
        while let Some(&(run_at, id)) = self.timers.first() {
            if run_at > self.clock {
                break;
            }
            self.timers.pop_first();
            let job = self.jobs.get(id).expect("timers only hold existing jobs");
            let (queue, priority, retry) = (job.queue, job.priority, job.has(FLAG_RETRY_WAIT));
            let state = &mut self.queues[queue as usize];
            if retry {
                state.retryable -= 1;
            } else {
                state.scheduled -= 1;
            }
            state.available.insert((priority, id.0));
        }
    }

    /// Applies records and packages them with a reply: the tail of every
    /// command.
    pub(crate) fn commit(
        &mut self,
        records: Vec<Record>,
        reply: Reply,
        actions: Vec<Action>,
    ) -> Result<Applied, CoreError> {
        for record in &records {
            self.apply_record(record).expect("a record built from a validated command applies");
            // Live changes only: replay applies records without this.
            let finished = match record {
                Record::Completed { job, .. } | Record::Cancelled { job, .. } => Some(*job),
                Record::Failed { job, retry_at: None, .. } => Some(*job),
                _ => None,
            };
            if let Some(job) = finished.and_then(|id| self.jobs.get(id)) {
                let index = match job.phase {
                    Phase::Completed => 0,
                    Phase::Cancelled => 1,
                    _ => 2,
                };
                self.queues[job.queue as usize].finished_since_open[index] += 1;
            }
        }
        Ok(Applied { reply, records, actions })
    }

    pub(crate) fn queue_id(&self, name: &QueueName) -> Option<QueueId> {
        self.queue_ids.get(name.as_str()).copied()
    }

    pub(crate) fn queue_id_or_create(&mut self, name: &QueueName) -> QueueId {
        if let Some(id) = self.queue_id(name) {
            return id;
        }
        let id = QueueId::try_from(self.queues.len()).expect("fewer than 2^32 queues");
        self.queues.push(QueueState::new(name.clone(), QueueConfig::default()));
        self.queue_ids.insert(name.as_str().to_string(), id);
        id
    }

    pub(crate) fn kind_id_or_create(&mut self, kind: &Kind) -> KindId {
        if let Some(&id) = self.kind_ids.get(kind.as_str()) {
            return id;
        }
        let id = KindId::try_from(self.kinds.len()).expect("fewer than 2^32 kinds");
        self.kinds.push(kind.clone());
        self.kind_ids.insert(kind.as_str().to_string(), id);
        id
    }

    /// The config of a queue, or the default for one that does not exist.
    pub(crate) fn config_of(&self, name: &QueueName) -> QueueConfig {
        self.queue_id(name).map(|id| self.queues[id as usize].config.clone()).unwrap_or_default()
    }

    /// The visible state of a job (as of the last command's time), if it
    /// exists.
    pub fn job_state(&self, id: JobId) -> Option<JobState> {
        self.jobs.get(id).map(|job| self.state_of(job))
    }

    /// The visible state of a job now.
    pub(crate) fn state_of(&self, job: &Job) -> JobState {
        match job.phase {
            Phase::Pending if job.run_at <= self.clock => JobState::Available,
            Phase::Pending if job.has(FLAG_RETRY_WAIT) => JobState::Retryable,
            Phase::Pending => JobState::Scheduled,
            Phase::Running => JobState::Running,
            Phase::Completed => JobState::Completed,
            Phase::Cancelled => JobState::Cancelled,
            Phase::Discarded => JobState::Discarded,
        }
    }

    pub(crate) fn job(&self, id: JobId) -> Result<&Job, CoreError> {
        self.jobs.get(id).ok_or(CoreError::NoSuchJob { job: id })
    }

    /// The job, if it is running `attempt`; otherwise why the report is
    /// stale.
    pub(crate) fn running(&self, id: JobId, attempt: Attempt) -> Result<&Job, CoreError> {
        let job = self.job(id)?;
        if job.phase != Phase::Running || job.attempt != attempt {
            return Err(CoreError::StaleAttempt { job: id, attempt, current: job.attempt, state: self.state_of(job) });
        }
        Ok(job)
    }

    // ---- indexes -------------------------------------------------------

    fn index_pending(&mut self, id: JobId) {
        let job = self.jobs.get(id).expect("indexed job exists");
        let (queue, priority, run_at, retry) = (job.queue, job.priority, job.run_at, job.has(FLAG_RETRY_WAIT));
        let state = &mut self.queues[queue as usize];
        if run_at <= self.clock {
            state.available.insert((priority, id.0));
        } else {
            self.timers.insert((run_at, id));
            if retry {
                state.retryable += 1;
            } else {
                state.scheduled += 1;
            }
        }
    }

    fn unindex_pending(&mut self, id: JobId) {
        let job = self.jobs.get(id).expect("indexed job exists");
        let (queue, priority, run_at, retry) = (job.queue, job.priority, job.run_at, job.has(FLAG_RETRY_WAIT));
        let state = &mut self.queues[queue as usize];
        if state.available.remove(&(priority, id.0)) {
            return;
        }
        assert!(self.timers.remove(&(run_at, id)), "pending job {id} is in no index");
        if retry {
            state.retryable -= 1;
        } else {
            state.scheduled -= 1;
        }
    }

    fn index_finished(&mut self, id: JobId, at: Timestamp) {
        let job = self.jobs.get(id).expect("indexed job exists");
        let state = &mut self.queues[job.queue as usize];
        state.finished_bytes += job.held_bytes();
        match job.phase {
            Phase::Completed => {
                state.completed.push_back((at, id));
                state.completed_count += 1;
            }
            Phase::Cancelled => {
                state.cancelled.push_back((at, id));
                state.cancelled_count += 1;
            }
            Phase::Discarded => {
                state.discarded.push_back((at, id));
                state.discarded_count += 1;
            }
            Phase::Pending | Phase::Running => unreachable!("not finished"),
        }
    }

    /// Forgets a finished job's counts (its retention-queue entry goes
    /// stale and is skipped when reached).
    fn unindex_finished(&mut self, id: JobId) {
        let job = self.jobs.get(id).expect("indexed job exists");
        let state = &mut self.queues[job.queue as usize];
        state.finished_bytes -= job.held_bytes();
        match job.phase {
            Phase::Completed => state.completed_count -= 1,
            Phase::Cancelled => state.cancelled_count -= 1,
            Phase::Discarded => state.discarded_count -= 1,
            Phase::Pending | Phase::Running => unreachable!("not finished"),
        }
    }

    fn unindex_running(&mut self, id: JobId) {
        let job = self.jobs.get(id).expect("indexed job exists");
        let deadline = job.extra().and_then(|extra| extra.lease_deadline).expect("running job has a deadline");
        assert!(self.deadlines.remove(&(deadline, id)), "running job {id} not in the deadline index");
        self.queues[job.queue as usize].running -= 1;
    }

    /// Removes a job from whatever index its phase puts it in.
    fn unindex(&mut self, id: JobId) {
        match self.jobs.get(id).expect("job exists").phase {
            Phase::Pending => self.unindex_pending(id),
            Phase::Running => self.unindex_running(id),
            Phase::Completed | Phase::Cancelled | Phase::Discarded => self.unindex_finished(id),
        }
    }

    fn index(&mut self, id: JobId, at: Timestamp) {
        match self.jobs.get(id).expect("job exists").phase {
            Phase::Pending => self.index_pending(id),
            Phase::Running => {
                let job = self.jobs.get(id).expect("job exists");
                let deadline = job.extra().and_then(|extra| extra.lease_deadline).expect("running job has a deadline");
                self.deadlines.insert((deadline, id));
                self.queues[job.queue as usize].running += 1;
            }
            Phase::Completed | Phase::Cancelled | Phase::Discarded => {
                let finished = self.jobs.get(id).and_then(|job| job.extra()).and_then(|extra| extra.finished_at);
                self.index_finished(id, finished.unwrap_or(at));
            }
        }
    }

    /// Changes a running attempt's lease deadline (a heartbeat: volatile).
    pub(crate) fn set_deadline(&mut self, id: JobId, deadline: Timestamp) {
        let job = self.jobs.get_mut(id).expect("running job exists");
        let extra = job.extra_mut();
        let old = extra.lease_deadline.replace(deadline).expect("running job has a deadline");
        assert!(self.deadlines.remove(&(old, id)));
        self.deadlines.insert((deadline, id));
    }

    /// Deletes a job and everything indexing it; returns its data file.
    fn delete(&mut self, id: JobId) -> Result<Option<String>, ApplyError> {
        if self.jobs.get(id).is_none() {
            return Err(inconsistent(format!("job {id} to delete does not exist")));
        }
        self.unindex(id);
        let job = self.jobs.remove(id).expect("checked");
        // Owned, unless a snapshot being written still shares it.
        let extra = job.extra.map(Arc::unwrap_or_clone).unwrap_or_default();
        if let Some((key, _)) = extra.unique {
            let entry = (job.queue, key);
            if self.unique.get(&entry).is_some_and(|(owner, _)| *owner == id) {
                self.unique.remove(&entry);
            }
        }
        Ok(extra.payload_file.map(|(name, _)| name))
    }

    // ---- loading a snapshot --------------------------------------------

    /// Inserts a job read from a snapshot and indexes it; finished jobs are
    /// collected into `finished` to be queued for retention in finish order.
    pub(crate) fn restore_job(
        &mut self,
        id: JobId,
        job: Job,
        finished: &mut Vec<(Timestamp, JobId)>,
    ) -> Result<(), crate::snapshot::SnapshotError> {
        let bad = |what: &str| crate::snapshot::SnapshotError::Inconsistent(format!("job {id}: {what}"));
        let extra = job.extra();
        match job.phase {
            Phase::Running => {
                if extra.and_then(|extra| extra.lease_deadline).is_none()
                    || extra.and_then(|e| e.holder.as_ref()).is_none()
                {
                    return Err(bad("running without a lease"));
                }
            }
            Phase::Completed | Phase::Cancelled | Phase::Discarded => {
                let at = extra.and_then(|extra| extra.finished_at).ok_or_else(|| bad("finished without a time"))?;
                finished.push((at, id));
            }
            Phase::Pending => {}
        }
        if let Some((key, expires)) = extra.and_then(|extra| extra.unique.clone()) {
            self.unique.insert((job.queue, key), (id, expires));
        }
        let phase = job.phase;
        self.jobs.insert(id, job);
        match phase {
            Phase::Completed | Phase::Cancelled | Phase::Discarded => {
                let job = self.jobs.get(id).expect("inserted");
                let state = &mut self.queues[job.queue as usize];
                state.finished_bytes += job.held_bytes();
                match phase {
                    Phase::Completed => state.completed_count += 1,
                    Phase::Cancelled => state.cancelled_count += 1,
                    _ => state.discarded_count += 1,
                }
            }
            _ => self.index(id, Timestamp(0)),
        }
        Ok(())
    }

    /// Queues a restored finished job for retention.
    pub(crate) fn restore_finished(&mut self, id: JobId, at: Timestamp) {
        let job = self.jobs.get(id).expect("restored job exists");
        let state = &mut self.queues[job.queue as usize];
        match job.phase {
            Phase::Completed => state.completed.push_back((at, id)),
            Phase::Cancelled => state.cancelled.push_back((at, id)),
            _ => state.discarded.push_back((at, id)),
        }
    }

    // ---- applying records ----------------------------------------------

    /// Applies one journal record. The live path applies records it just
    /// built from a validated command; replay applies the journal's. A
    /// record that does not fit the state is an error (the journal is
    /// inconsistent), never silently skipped.
    pub fn apply_record(&mut self, record: &Record) -> Result<(), ApplyError> {
        match record {
            Record::Enqueued { at, first_id, jobs } => {
                if first_id.0 < self.next_id {
                    return Err(inconsistent(format!("job id {first_id} was already used")));
                }
                for (offset, new) in jobs.iter().enumerate() {
                    let id = JobId(first_id.0 + offset as u64);
                    let queue = self.queue_id_or_create(&new.queue);
                    let kind = self.kind_id_or_create(&new.kind);
                    let (payload, payload_file) = match &new.payload {
                        Payload::Inline(bytes) => (Arc::from(bytes.as_slice()), None),
                        Payload::File { name, len } => (Arc::default(), Some((name.clone(), *len))),
                    };
                    let mut job = Job {
                        queue,
                        kind,
                        priority: new.priority.0,
                        timeout_ms: new.timeout_ms,
                        attempt: 0,
                        attempts_used: 0,
                        max_attempts: new.max_attempts,
                        phase: Phase::Pending,
                        flags: 0,
                        run_at: new.run_at,
                        created_at: *at,
                        payload,
                        extra: None,
                    };
                    if payload_file.is_some() || new.unique.is_some() || !new.tags.is_empty() {
                        let extra = job.extra_mut();
                        extra.payload_file = payload_file;
                        extra.unique = new.unique.clone();
                        extra.tags = new.tags.clone();
                    }
                    if let Some((key, expires)) = &new.unique {
                        self.unique.insert((queue, key.clone()), (id, *expires));
                    }
                    self.jobs.insert(id, job);
                    self.index_pending(id);
                }
                self.next_id = first_id.0 + jobs.len() as u64;
            }
            Record::Leased { at, holder, grants } => {
                for grant in grants {
                    let job = self
                        .jobs
                        .get(grant.job)
                        .ok_or_else(|| inconsistent(format!("leased job {} does not exist", grant.job)))?;
                    if job.phase != Phase::Pending || grant.attempt <= job.attempt {
                        return Err(inconsistent(format!(
                            "job {} leased as attempt {} but it is at attempt {} ({:?})",
                            grant.job, grant.attempt, job.attempt, job.phase
                        )));
                    }
                    self.unindex_pending(grant.job);
                    let job = self.jobs.get_mut(grant.job).expect("checked");
                    job.phase = Phase::Running;
                    job.attempt = grant.attempt;
                    job.attempts_used = job.attempts_used.saturating_add(1);
                    job.set(FLAG_RETRY_WAIT, false);
                    job.set(FLAG_CANCEL_REQUESTED, false);
                    job.set(FLAG_KILL_REQUESTED, false);
                    let extra = job.extra_mut();
                    extra.attempted_at = Some(*at);
                    extra.holder = Some(holder.clone());
                    extra.lease_deadline = Some(grant.deadline);
                    self.index(grant.job, *at);
                }
            }
            Record::Checkpointed { job, attempt, checkpoint, progress } => {
                let entry = self.running_for_record(*job, *attempt)?;
                let extra = entry.extra_mut();
                extra.checkpoint = Some(checkpoint.clone());
                if progress.is_some() {
                    extra.progress = progress.clone();
                }
            }
            Record::Completed { job, attempt, at, result, progress } => {
                // The result first: finishing counts the bytes the job holds.
                self.running_for_record(*job, *attempt)?.extra_mut().result = result.clone();
                self.end_attempt(*job, Phase::Completed, *at, None, progress.clone(), false);
            }
            Record::Failed { job, attempt, at, error, retry_at, checkpoint, progress } => {
                self.running_for_record(*job, *attempt)?;
                let max_errors = self.limits.max_error_history;
                {
                    let entry = self.jobs.get_mut(*job).expect("checked");
                    let extra = entry.extra_mut();
                    extra.errors.push(AttemptError { attempt: *attempt, at: *at, error: error.clone() });
                    if extra.errors.len() > max_errors {
                        let excess = extra.errors.len() - max_errors;
                        extra.errors.drain(..excess);
                    }
                }
                match retry_at {
                    Some(retry_at) => {
                        self.end_attempt(*job, Phase::Pending, *retry_at, checkpoint.clone(), progress.clone(), true)
                    }
                    None => self.end_attempt(*job, Phase::Discarded, *at, checkpoint.clone(), progress.clone(), false),
                }
            }
            Record::Snoozed { job, attempt, until, progress } => {
                self.running_for_record(*job, *attempt)?;
                {
                    let entry = self.jobs.get_mut(*job).expect("checked");
                    entry.attempts_used = entry.attempts_used.saturating_sub(1);
                }
                self.end_attempt(*job, Phase::Pending, *until, None, progress.clone(), false);
            }
            Record::Released { job, attempt, checkpoint, progress } => {
                self.running_for_record(*job, *attempt)?;
                {
                    let entry = self.jobs.get_mut(*job).expect("checked");
                    entry.attempts_used = entry.attempts_used.saturating_sub(1);
                }
                // Available again at once: its old due time has passed.
                let run_at = self.jobs.get(*job).expect("checked").run_at;
                self.end_attempt(*job, Phase::Pending, run_at, checkpoint.clone(), progress.clone(), false);
            }
            Record::CancelRequested { job, attempt } => {
                let entry = self.running_for_record(*job, *attempt)?;
                entry.set(FLAG_CANCEL_REQUESTED, true);
            }
            Record::Cancelled { job, at, attempt, checkpoint, progress } => {
                let entry =
                    self.jobs.get(*job).ok_or_else(|| inconsistent(format!("cancelled job {job} does not exist")))?;
                match (entry.phase, attempt) {
                    (Phase::Pending, None) => {
                        self.unindex_pending(*job);
                        let entry = self.jobs.get_mut(*job).expect("checked");
                        entry.phase = Phase::Cancelled;
                        entry.set(FLAG_RETRY_WAIT, false);
                        entry.extra_mut().finished_at = Some(*at);
                        self.index(*job, *at);
                    }
                    (Phase::Running, Some(attempt)) if entry.attempt == *attempt => {
                        self.end_attempt(*job, Phase::Cancelled, *at, checkpoint.clone(), progress.clone(), false);
                    }
                    (phase, _) => {
                        return Err(inconsistent(format!(
                            "job {job} cancelled in phase {phase:?}, attempt {attempt:?}"
                        )))
                    }
                }
            }
            Record::Retried { job, at } => {
                let entry =
                    self.jobs.get(*job).ok_or_else(|| inconsistent(format!("retried job {job} does not exist")))?;
                if !matches!(entry.phase, Phase::Completed | Phase::Cancelled | Phase::Discarded) {
                    return Err(inconsistent(format!("job {job} retried while {:?}", entry.phase)));
                }
                self.unindex_finished(*job);
                let entry = self.jobs.get_mut(*job).expect("checked");
                entry.phase = Phase::Pending;
                entry.run_at = *at;
                entry.attempts_used = 0;
                entry.flags = 0;
                let extra = entry.extra_mut();
                extra.finished_at = None;
                extra.result = None;
                self.index_pending(*job);
            }
            Record::QueueConfigured { queue, config } => {
                let id = self.queue_id_or_create(queue);
                self.queues[id as usize].config = config.clone();
            }
            Record::Purged { jobs } | Record::Deleted { jobs } => {
                for &job in jobs {
                    self.delete(job)?;
                }
            }
            Record::Moved { job, to } => {
                let entry =
                    self.jobs.get(*job).ok_or_else(|| inconsistent(format!("moved job {job} does not exist")))?;
                if entry.phase == Phase::Running {
                    return Err(inconsistent(format!("job {job} moved while running")));
                }
                let from = entry.queue;
                let unique_key = entry.extra().and_then(|extra| extra.unique.clone());
                let finished_at = entry.extra().and_then(|extra| extra.finished_at);
                self.unindex(*job);
                let target = self.queue_id_or_create(to);
                self.jobs.get_mut(*job).expect("checked").queue = target;
                if let Some((key, expires)) = unique_key {
                    if self.unique.get(&(from, key.clone())).is_some_and(|(owner, _)| owner == job) {
                        self.unique.remove(&(from, key.clone()));
                        self.unique.insert((target, key), (*job, expires));
                    }
                }
                self.index(*job, finished_at.unwrap_or(self.clock));
            }
        }
        Ok(())
    }

    fn running_for_record(&mut self, id: JobId, attempt: Attempt) -> Result<&mut Job, ApplyError> {
        match self.jobs.get_mut(id) {
            Some(job) if job.phase == Phase::Running && job.attempt == attempt => Ok(job),
            Some(job) => Err(inconsistent(format!(
                "record for job {id} attempt {attempt}, but the job is {:?} at attempt {}",
                job.phase, job.attempt
            ))),
            None => Err(inconsistent(format!("record for job {id}, which does not exist"))),
        }
    }

    /// Ends the running attempt of `id`: to `phase` (pending at `at`, or
    /// finished at `at`), keeping a returned checkpoint and progress. A
    /// pending job waiting out a retry backoff has `retry_wait` set.
    fn end_attempt(
        &mut self,
        id: JobId,
        phase: Phase,
        at: Timestamp,
        checkpoint: Option<Vec<u8>>,
        progress: Option<crate::job::Progress>,
        retry_wait: bool,
    ) {
        self.unindex_running(id);
        let job = self.jobs.get_mut(id).expect("running job exists");
        job.phase = phase;
        job.set(FLAG_CANCEL_REQUESTED, false);
        job.set(FLAG_KILL_REQUESTED, false);
        job.set(FLAG_RETRY_WAIT, retry_wait);
        let extra = job.extra_mut();
        extra.holder = None;
        extra.lease_deadline = None;
        if checkpoint.is_some() {
            extra.checkpoint = checkpoint;
        }
        // The record carries the attempt's last progress (the command path
        // fills in what was reported between checkpoints), so live state
        // and replay agree.
        extra.progress = progress;
        if phase == Phase::Pending {
            job.run_at = at;
        } else {
            extra.finished_at = Some(at);
        }
        self.index(id, at);
    }
}
