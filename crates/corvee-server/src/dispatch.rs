//! Dispatch: for each worker pool, and for the command runner, lease as
//! many jobs as there is free capacity, from the queues it serves, and hand
//! them over. Leasing waits for capacity and for work (the store wakes it
//! on enqueue and when scheduled jobs come due), never polls. Leases are
//! durable before a job is handed over, so its attempt counts even if the
//! daemon dies mid-job.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corvee_core::{InterruptCause, JobId, QueueName, Timestamp};
use corvee_store::{LeasedJob, PayloadData, Store};
use corvee_supervisor::{CommandError, CommandJob, CommandSpec, JobToRun, Payload, ProgressState, SubmitError};

use crate::daemon::Daemon;
use crate::executions::Runner;

/// How long one wait for work lasts before re-checking for shutdown.
const WAIT_SLICE: Duration = Duration::from_secs(1);

fn system_time(at: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(at.0)
}

fn to_job(lease: LeasedJob) -> JobToRun {
    JobToRun {
        job_id: lease.job.0,
        attempt: lease.attempt,
        queue: lease.queue.to_string(),
        kind: lease.kind.to_string(),
        payload: match lease.payload {
            PayloadData::Inline(bytes) => Payload::Inline(bytes),
            PayloadData::File { path, len } => Payload::File { path, length: len },
        },
        checkpoint: lease.checkpoint,
        progress: lease.progress.map(|progress| ProgressState {
            done: progress.done,
            total: progress.total,
            message: progress.message,
        }),
        deadline: Some(system_time(lease.deadline)),
    }
}

/// Waits until the daemon stops or `future` finishes; `None` if stopping.
async fn unless_stopping<T>(daemon: &Daemon, future: impl std::future::Future<Output = T>) -> Option<T> {
    let mut stopping = daemon.stopping.subscribe();
    if *stopping.borrow() {
        return None;
    }
    tokio::select! {
        value = future => Some(value),
        _ = stopping.wait_for(|stopping| *stopping) => None,
    }
}

/// The wait from a job becoming due to its lease.
fn observe_wait(daemon: &Daemon, lease: &LeasedJob) {
    let now = daemon.store.now();
    daemon.metrics.wait.observe(Duration::from_millis(now.millis_since(lease.due_at)));
}

/// Sends an interrupt asked for before the attempt was handed over.
fn interrupt_early(daemon: &Daemon, job: JobId, attempt: u32, cause: Option<InterruptCause>) {
    if let Some(cause) = cause {
        daemon.interrupt(job, attempt, cause);
    }
}

/// The next leases for a runner: waits for it to have room
/// (`wait_for_capacity`, then `free_capacity` slots) and for work in
/// `queues`, then leases up to that many jobs. A failed lease is logged and
/// tried again a moment later. `None` once the daemon stops.
async fn next_leases<W: std::future::Future<Output = ()>>(
    daemon: &Daemon,
    queues: &[QueueName],
    runner: &str,
    wait_for_capacity: impl Fn() -> W,
    free_capacity: impl Fn() -> usize,
) -> Option<Vec<LeasedJob>> {
    loop {
        unless_stopping(daemon, wait_for_capacity()).await?;
        let free = free_capacity();
        if free == 0 || !unless_stopping(daemon, daemon.store.wait_for_available(queues, WAIT_SLICE)).await? {
            continue;
        }
        match daemon.store.lease(queues, free as u32, daemon.holder.clone()).await {
            Ok(leases) => return Some(leases),
            Err(error) => {
                tracing::error!(runner, "leasing failed: {error}");
                unless_stopping(daemon, tokio::time::sleep(WAIT_SLICE)).await?;
            }
        }
    }
}

/// Leases for worker pool `index` until shutdown.
pub async fn run_pool(daemon: Arc<Daemon>, index: usize) {
    let pool = &daemon.pools[index];
    let queues = pool.settings.queues.clone();
    let name = format!("pool {}", pool.settings.pool.name);
    while let Some(leases) =
        next_leases(&daemon, &queues, &name, || pool.pool.wait_for_capacity(), || pool.pool.free_capacity()).await
    {
        for lease in leases {
            observe_wait(&daemon, &lease);
            let (job, attempt) = (lease.job, lease.attempt);
            let early_interrupt = daemon.executions.started(job, attempt, Runner::Pool(index));
            match pool.pool.submit(to_job(lease)) {
                // A cancel that came between the lease and the hand-over.
                Ok(()) => interrupt_early(&daemon, job, attempt, early_interrupt),
                Err(SubmitError::UnknownKind { pool: name, job: refused }) => {
                    daemon.executions.ended(job, attempt);
                    let error = format!(
                        "no worker of pool {name} runs jobs of kind {:?}; add the kind to a pool serving queue {}",
                        refused.kind, refused.queue
                    );
                    let _ = daemon.store.fail(job, attempt, error, true, None).await;
                }
                Err(other) => {
                    // No room after all, or stopping: give the lease back
                    // without counting the attempt.
                    daemon.executions.ended(job, attempt);
                    tracing::debug!("could not hand over job {job}: {other}");
                    let _ = daemon.store.release(job, attempt).await;
                }
            }
        }
    }
}

/// Leases command jobs for the command runner until shutdown.
pub async fn run_commands(daemon: Arc<Daemon>) {
    let queues = vec![daemon.config.commands.queue.clone()];
    let commands = &daemon.commands;
    while let Some(leases) =
        next_leases(&daemon, &queues, "commands", || commands.wait_for_capacity(), || commands.free_capacity()).await
    {
        for lease in leases {
            observe_wait(&daemon, &lease);
            let (job, attempt) = (lease.job, lease.attempt);
            let spec = match &lease.payload {
                PayloadData::Inline(bytes) => serde_json::from_slice::<CommandSpec>(bytes)
                    .map_err(|error| format!("the payload is not a command (argv, env, cwd as JSON): {error}")),
                PayloadData::File { .. } => Err("a command's payload cannot be that large".to_string()),
            }
            .and_then(|spec| {
                if spec.argv.is_empty() {
                    Err("the command's argv is empty".to_string())
                } else {
                    Ok(spec)
                }
            });
            let spec = match spec {
                Ok(spec) => spec,
                Err(error) => {
                    let _ = daemon.store.fail(job, attempt, error, false, None).await;
                    continue;
                }
            };
            let early_interrupt = daemon.executions.started(job, attempt, Runner::Command);
            let command = CommandJob { job_id: job.0, attempt, spec, retryable_on_failure: true };
            match daemon.commands.run(command) {
                Ok(()) => interrupt_early(&daemon, job, attempt, early_interrupt),
                Err(CommandError::NoCapacity { .. })
                | Err(CommandError::AlreadyRunning { .. })
                | Err(CommandError::Stopping { .. }) => {
                    // Not started: the lease goes back without counting.
                    daemon.executions.ended(job, attempt);
                    let _ = daemon.store.release(job, attempt).await;
                }
            }
        }
    }
}
