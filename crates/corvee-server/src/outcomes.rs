//! What workers report, recorded in the store: progress, checkpoints and
//! the outcome of each attempt; plus worker lifecycle events for the API
//! and the monitor.
//!
//! Reports are recorded in batches: see [`run`].

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::Arc;

use corvee_core::{InterruptCause, JobId, Progress};
use corvee_store::{Report, Store};
use corvee_supervisor::{Event, JobKey, JobResult, Outcome, ProgressState};
use tokio::sync::mpsc;

use crate::daemon::Daemon;
use crate::hub::ApiEvent;

fn progress(state: ProgressState) -> Progress {
    Progress { done: state.done, total: state.total, message: state.message }
}

/// The most reports recorded in one store call.
const MAX_BATCH: usize = 4096;

/// Reports gathered from the events that were waiting, recorded in one
/// store call.
#[derive(Default)]
struct Batch {
    reports: Vec<Report>,
    /// Per report: what to do once it is recorded.
    after: Vec<After>,
    /// Per attempt: its latest report in the batch, and whether that is a
    /// progress report (a newer one replaces it).
    latest: HashMap<JobKey, (usize, bool)>,
}

/// What to do once a report is recorded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Nothing,
    /// The attempt ended.
    Ended,
    /// The attempt died with its worker, not by our hand: the monitor
    /// looks for poison jobs.
    Lost,
}

impl Batch {
    fn push(&mut self, key: JobKey, report: Report, after: After) {
        let progress = matches!(report, Report::Progress { .. });
        if progress {
            if let Some(&(index, true)) = self.latest.get(&key) {
                // Only the latest progress matters.
                self.reports[index] = report;
                return;
            }
        }
        self.latest.insert(key, (self.reports.len(), progress));
        self.reports.push(report);
        self.after.push(after);
    }
}

/// Handles supervisor events until every pool and the runner are gone.
///
/// Whatever events wait when the loop comes round are handled together:
/// their reports go to the store in one call (one journal write), and the
/// next batch gathers while that one is made durable. One batch is in
/// flight at a time, so each job's reports are recorded in the order they
/// came (a checkpoint before the failure that follows it, or the retry
/// would not resume from it).
pub async fn run(daemon: Arc<Daemon>, mut events: mpsc::Receiver<Event>) {
    let mut stopped = daemon.stopped.subscribe();
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
            _ = stopped.wait_for(|stopped| *stopped) => return,
        };
        let mut batch = Batch::default();
        handle(&daemon, event, &mut batch);
        while batch.reports.len() < MAX_BATCH {
            match events.try_recv() {
                Ok(event) => handle(&daemon, event, &mut batch),
                Err(_) => break,
            }
        }
        if !batch.reports.is_empty() {
            record(&daemon, batch).await;
        }
    }
}

/// Handles one event: its report (if any) joins the batch.
fn handle(daemon: &Daemon, event: Event, batch: &mut Batch) {
    match event {
        Event::Progress { job, progress: state } => {
            if daemon.hub.has_subscribers() {
                daemon.hub.publish(ApiEvent::Progress {
                    id: JobId(job.job_id),
                    attempt: job.attempt,
                    done: state.done,
                    total: state.total,
                    message: state.message.clone(),
                });
            }
            let report = Report::Progress { job: JobId(job.job_id), attempt: job.attempt, progress: progress(state) };
            batch.push(job, report, After::Nothing);
        }
        Event::Checkpoint { job, checkpoint } => {
            let report =
                Report::Checkpoint { job: JobId(job.job_id), attempt: job.attempt, checkpoint, progress: None };
            batch.push(job, report, After::Nothing);
        }
        Event::Outcome { job, outcome } => {
            let (report, after) = outcome_report(daemon, job, outcome);
            batch.push(job, report, after);
        }
        Event::Log(_) => {} // the log store has it already
        Event::CommandStarted { job, pid } => tracing::debug!(%job, pid, "command job started"),
        Event::Escalation { target, step, reason } => {
            tracing::info!(?target, ?step, %reason, "stopping an attempt");
        }
        Event::WorkerStarted { pool, worker, pid } => {
            let detail = format!("pid {pid}");
            worker_event(daemon, &pool, Some(worker.0), "started", detail);
        }
        Event::WorkerReady { pool, worker, worker_name, window, .. } => {
            daemon.monitor.pool_healthy(&pool);
            let detail = format!("{worker_name:?} ready, window {window}");
            worker_event(daemon, &pool, Some(worker.0), "ready", detail);
        }
        Event::WorkerExited { pool, worker, exit, reason, .. } => {
            worker_event(daemon, &pool, Some(worker.0), "exited", format!("{exit}: {reason}"));
        }
        Event::WorkerSpawnFailed { pool, error } => worker_event(daemon, &pool, None, "spawn_failed", error),
        Event::RestartScheduled { pool, delay, consecutive_failures, .. } => {
            daemon.metrics.restarted(&pool);
            let detail = format!("restart in {delay:?} after {consecutive_failures} failure(s)");
            worker_event(daemon, &pool, None, "restart_scheduled", detail);
        }
        Event::CrashLooping { pool, consecutive_failures, next_restart_in, .. } => {
            daemon.monitor.crash_looping(&pool, consecutive_failures, next_restart_in);
            let detail = format!("{consecutive_failures} failures in a row; next restart in {next_restart_in:?}");
            worker_event(daemon, &pool, None, "crash_looping", detail);
        }
        Event::StaleReply { pool, job, message, .. } => {
            tracing::warn!(%pool, %job, message, "stale reply from a worker");
        }
    }
}

/// Records a batch and does what each recorded report calls for.
async fn record(daemon: &Daemon, batch: Batch) {
    let jobs: Vec<JobKey> =
        batch.reports.iter().map(|report| JobKey { job_id: report.job().0, attempt: report.attempt() }).collect();
    let answers = match daemon.store.report(batch.reports).await {
        Ok(answers) => answers,
        Err(error) => {
            tracing::error!(reports = jobs.len(), "reports not recorded, the store failed: {error}");
            daemon.execution_ended.notify_waiters();
            return;
        }
    };
    let mut ended = false;
    for ((key, answer), after) in jobs.into_iter().zip(answers).zip(batch.after) {
        ended |= after != After::Nothing;
        match answer {
            Ok(state) if after != After::Nothing && state.is_finished() => daemon.logs.finish(key.job_id),
            Ok(_) => {}
            Err(error) => tracing::warn!(%key, "report not recorded: {error}"),
        }
        if after == After::Lost {
            if let Ok(Some(view)) = daemon.store.get(JobId(key.job_id)).await {
                daemon.monitor.lost_attempt(&view);
            }
        }
    }
    if ended {
        daemon.execution_ended.notify_waiters();
    }
}

fn worker_event(daemon: &Daemon, pool: &str, worker: Option<u64>, event: &'static str, detail: String) {
    tracing::info!(%pool, ?worker, event, "{detail}");
    daemon.hub.publish(ApiEvent::Worker { pool: pool.to_string(), worker, event, detail });
}

/// Reads a result the worker passed as a file descriptor, within the
/// store's result limit.
fn read_result(daemon: &Daemon, result: JobResult) -> Result<Vec<u8>, String> {
    match result {
        JobResult::Inline(bytes) => Ok(bytes),
        JobResult::Fd { fd, length } => {
            let max = daemon.limits.max_result_bytes as u64;
            if length > max {
                return Err(format!("the result is {length} bytes, over the limit of {max}"));
            }
            let mut bytes = vec![0u8; length as usize];
            let mut offset = 0usize;
            while offset < bytes.len() {
                match rustix::io::pread(fd.as_fd(), &mut bytes[offset..], offset as u64) {
                    Ok(0) => return Err("the result file is shorter than announced".into()),
                    Ok(read) => offset += read,
                    Err(error) => return Err(format!("cannot read the result file: {error}")),
                }
            }
            Ok(bytes)
        }
    }
}

/// The report for how an attempt ended.
fn outcome_report(daemon: &Daemon, key: JobKey, outcome: Outcome) -> (Report, After) {
    let (job, attempt) = (JobId(key.job_id), key.attempt);
    let execution = daemon.executions.ended(job, attempt);
    if let Some(execution) = &execution {
        daemon.metrics.run.observe(execution.started.elapsed());
    }
    let cause = execution.as_ref().and_then(|execution| execution.interrupt);
    let fail = |error: String, retryable: bool| Report::Fail { job, attempt, error, retryable, progress: None };
    let report = match outcome {
        Outcome::Completed { result } => match result.map(|result| read_result(daemon, result)).transpose() {
            Ok(result) => {
                daemon.monitor.forget_job(job);
                Report::Complete { job, attempt, result, progress: None }
            }
            Err(error) => fail(error, false),
        },
        Outcome::Failed { error, retryable, .. } => fail(error, retryable),
        Outcome::Snoozed { delay } => Report::Snooze { job, attempt, delay },
        Outcome::Interrupted { checkpoint, progress: state } => {
            // A worker only stops early when asked; if we did not record
            // why, it was its deadline (the supervisor enforces those).
            let cause = cause.unwrap_or(InterruptCause::Deadline);
            Report::Interrupted { job, attempt, cause, checkpoint, progress: state.map(progress) }
        }
        Outcome::Lost { reason } => match cause {
            // Killed by our own shutdown or a cancel: an interruption
            // (at shutdown the lease goes back unused).
            Some(cause @ (InterruptCause::Shutdown | InterruptCause::Cancel)) => {
                Report::Interrupted { job, attempt, cause, checkpoint: None, progress: None }
            }
            _ => return (fail(format!("lost: {reason}"), true), After::Lost),
        },
        Outcome::NotStarted { .. } => Report::Release { job, attempt },
    };
    (report, After::Ended)
}
