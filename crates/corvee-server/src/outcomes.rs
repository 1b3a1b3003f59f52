//! What workers report, recorded in the store: progress, checkpoints and
//! the outcome of each attempt; plus worker lifecycle events for the API
//! and the monitor.
//!
//! Store writes wait for an fsync, so the loop does not wait for them: each
//! is a task. But a job's reports must be recorded in the order they came
//! (a checkpoint before the failure that follows it, or the retry would not
//! resume from it), so each job's tasks form a chain: a task first waits for
//! the previous one of the same job. The chain ends with the outcome.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::Arc;

use corvee_core::{InterruptCause, JobId, Progress};
use corvee_store::Store;
use corvee_supervisor::{Event, JobKey, JobResult, Outcome, ProgressState};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::daemon::Daemon;
use crate::hub::ApiEvent;

fn progress(state: ProgressState) -> Progress {
    Progress { done: state.done, total: state.total, message: state.message }
}

/// Handles supervisor events until every pool and the runner are gone.
pub async fn run(daemon: Arc<Daemon>, mut events: mpsc::Receiver<Event>) {
    let mut chains: HashMap<JobKey, JoinHandle<()>> = HashMap::new();
    let mut stopped = daemon.stopped.subscribe();
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
            _ = stopped.wait_for(|stopped| *stopped) => return,
        };
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
                let daemon = Arc::clone(&daemon);
                chain(&mut chains, job, false, async move {
                    let _ = daemon.store.progress(JobId(job.job_id), job.attempt, progress(state)).await;
                });
            }
            Event::Checkpoint { job, checkpoint } => {
                let daemon = Arc::clone(&daemon);
                chain(&mut chains, job, false, async move {
                    if let Err(error) = daemon.store.checkpoint(JobId(job.job_id), job.attempt, checkpoint, None).await
                    {
                        tracing::warn!(%job, "checkpoint not recorded: {error}");
                    }
                });
            }
            Event::Outcome { job, outcome } => {
                let daemon = Arc::clone(&daemon);
                chain(&mut chains, job, true, async move { record_outcome(&daemon, job, outcome).await });
            }
            Event::Log(_) => {} // the log store has it already
            Event::Escalation { target, step, reason } => {
                tracing::info!(?target, ?step, %reason, "stopping an attempt");
            }
            Event::WorkerStarted { pool, worker, pid } => {
                daemon.ledger.record(pid);
                daemon.live_processes.lock().unwrap_or_else(|p| p.into_inner()).insert(pid, ());
                let detail = format!("pid {pid}");
                worker_event(&daemon, &pool, Some(worker.0), "started", detail);
            }
            Event::WorkerReady { pool, worker, worker_name, window, .. } => {
                daemon.monitor.pool_healthy(&pool);
                let detail = format!("{worker_name:?} ready, window {window}");
                worker_event(&daemon, &pool, Some(worker.0), "ready", detail);
            }
            Event::WorkerExited { pool, worker, pid, exit, reason, .. } => {
                daemon.live_processes.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
                worker_event(&daemon, &pool, Some(worker.0), "exited", format!("{exit}: {reason}"));
            }
            Event::WorkerSpawnFailed { pool, error } => worker_event(&daemon, &pool, None, "spawn_failed", error),
            Event::RestartScheduled { pool, delay, consecutive_failures, .. } => {
                daemon.metrics.restarted(&pool);
                let detail = format!("restart in {delay:?} after {consecutive_failures} failure(s)");
                worker_event(&daemon, &pool, None, "restart_scheduled", detail);
            }
            Event::CrashLooping { pool, consecutive_failures, next_restart_in, .. } => {
                daemon.monitor.crash_looping(&pool, consecutive_failures, next_restart_in);
                let detail = format!("{consecutive_failures} failures in a row; next restart in {next_restart_in:?}");
                worker_event(&daemon, &pool, None, "crash_looping", detail);
            }
            Event::StaleReply { pool, job, message, .. } => {
                tracing::warn!(%pool, %job, message, "stale reply from a worker");
            }
        }
        // Finished chains need not be kept.
        if chains.len() > 4096 {
            chains.retain(|_, task| !task.is_finished());
        }
    }
}

/// Runs `work` after the previous task of the same job; an outcome ends the
/// job's chain.
fn chain(
    chains: &mut HashMap<JobKey, JoinHandle<()>>,
    job: JobKey,
    last: bool,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let previous = chains.remove(&job);
    let task = tokio::spawn(async move {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        work.await;
    });
    if !last {
        chains.insert(job, task);
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

/// Records how an attempt ended.
async fn record_outcome(daemon: &Daemon, key: JobKey, outcome: Outcome) {
    let (job, attempt) = (JobId(key.job_id), key.attempt);
    let execution = daemon.executions.ended(job, attempt);
    if let Some(execution) = &execution {
        daemon.metrics.run.observe(execution.started.elapsed());
    }
    let cause = execution.as_ref().and_then(|execution| execution.interrupt);
    let store = &daemon.store;
    let result = match outcome {
        Outcome::Completed { result } => match result.map(|result| read_result(daemon, result)).transpose() {
            Ok(result) => {
                daemon.monitor.forget_job(job);
                store.complete(job, attempt, result, None).await
            }
            Err(error) => store.fail(job, attempt, error, false, None).await.map(drop),
        },
        Outcome::Failed { error, retryable, .. } => store.fail(job, attempt, error, retryable, None).await.map(drop),
        Outcome::Snoozed { delay } => store.snooze(job, attempt, delay).await,
        Outcome::Interrupted { checkpoint, progress: state } => {
            // A worker only stops early when asked; if we did not record
            // why, it was its deadline (the supervisor enforces those).
            let cause = cause.unwrap_or(InterruptCause::Deadline);
            store.interrupted(job, attempt, cause, checkpoint, state.map(progress)).await.map(drop)
        }
        Outcome::Lost { reason } => match cause {
            // Killed by our own shutdown: the lease goes back unused.
            Some(InterruptCause::Shutdown) => {
                store.interrupted(job, attempt, InterruptCause::Shutdown, None, None).await.map(drop)
            }
            Some(InterruptCause::Cancel) => {
                store.interrupted(job, attempt, InterruptCause::Cancel, None, None).await.map(drop)
            }
            _ => {
                let failed = store.fail(job, attempt, format!("lost: {reason}"), true, None).await.map(drop);
                if let Ok(Some(view)) = store.get(job).await {
                    daemon.monitor.lost_attempt(&view);
                }
                failed
            }
        },
        Outcome::NotStarted { .. } => store.release(job, attempt).await,
    };
    if let Err(error) = result {
        tracing::warn!(%key, "outcome not recorded: {error}");
    }
    if daemon.store.get(job).await.ok().flatten().is_some_and(|view| view.state.is_finished()) {
        daemon.logs.finish(job.0);
    }
    daemon.execution_ended.notify_waiters();
}
