//! The monitor (multispool's idea): what needs a human's attention. Jobs
//! waiting longer than their queue's `too_old` limit, attempts running past
//! their lease without news (stuck), spool files left behind (a writer that
//! died mid-write) or refused, worker pools that crash-loop, and poison jobs
//! (every attempt killed its worker). Findings are recomputed every few
//! seconds; new ones are published on the event stream; all are in
//! `GET /v1/monitor`, in `/metrics` and in `corvee monitor`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use corvee_core::{JobFilter, JobId, JobState, JobView};
use corvee_store::Store;
use serde_json::{json, Value};

use crate::daemon::Daemon;
use crate::hub::ApiEvent;

/// One finding.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// `too_old`, `stuck`, `orphaned_spool_file`, `failed_spool_file`,
    /// `crash_looping` or `poison`.
    pub kind: &'static str,
    /// What it is about, for deduplication (job id, path, pool).
    pub subject: String,
    /// The finding as the API shows it.
    pub detail: Value,
}

#[derive(Debug, Default)]
struct State {
    /// Recomputed findings (too old, stuck, spool files).
    computed: Vec<Finding>,
    /// Pools reported crash-looping, until a worker of theirs is healthy.
    crash_looping: HashMap<String, Finding>,
    /// Jobs whose every attempt killed its worker.
    poison: HashMap<JobId, Finding>,
}

/// The current findings.
#[derive(Debug, Default)]
pub struct Monitor {
    state: Mutex<State>,
}

impl Monitor {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every finding now, as the API shows them.
    pub fn findings(&self) -> Vec<Value> {
        let state = self.lock();
        state
            .computed
            .iter()
            .chain(state.crash_looping.values())
            .chain(state.poison.values())
            .map(|finding| finding.detail.clone())
            .collect()
    }

    /// Findings counted by kind (for metrics).
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let state = self.lock();
        let mut counts = BTreeMap::new();
        for finding in state.computed.iter().chain(state.crash_looping.values()).chain(state.poison.values()) {
            *counts.entry(finding.kind).or_insert(0) += 1;
        }
        counts
    }

    /// A pool's workers keep dying right after start.
    pub fn crash_looping(&self, pool: &str, failures: u32, next_restart_in: Duration) {
        let message = format!(
            "worker pool {pool} is crash-looping: {failures} workers in a row died soon after starting; \
             next restart in {next_restart_in:?} — check the pool's argv and its logs"
        );
        let detail = json!({"kind": "crash_looping", "pool": pool, "failures": failures, "message": message});
        self.lock()
            .crash_looping
            .insert(pool.to_string(), Finding { kind: "crash_looping", subject: pool.into(), detail });
    }

    /// A pool has a healthy worker again.
    pub fn pool_healthy(&self, pool: &str) {
        self.lock().crash_looping.remove(pool);
    }

    /// An attempt of `view`'s job died with its worker: if every attempt so
    /// far did, the job is poison.
    pub fn lost_attempt(&self, view: &JobView) {
        let all_lost = view.errors.len() >= 2 && view.errors.iter().all(|error| error.error.starts_with("lost:"));
        if !all_lost {
            return;
        }
        let message = format!(
            "job {} killed its worker on each of its {} attempts (last: {}); it is {} — inspect it before retrying",
            view.id,
            view.errors.len(),
            view.errors.last().map_or("", |error| error.error.as_str()),
            view.state
        );
        let detail = json!({"kind": "poison", "job": view.id.0, "queue": view.queue.as_str(), "attempts": view.errors.len(), "message": message});
        self.lock().poison.insert(view.id, Finding { kind: "poison", subject: view.id.to_string(), detail });
    }

    /// A job completed: it is not poison any more.
    pub fn forget_job(&self, job: JobId) {
        self.lock().poison.remove(&job);
    }
}

/// Recomputes the findings every `monitor.interval` and publishes new ones.
pub async fn run(daemon: Arc<Daemon>) {
    let mut stopping = daemon.stopping.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(daemon.config.monitor.interval) => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
        let computed = compute(&daemon).await;
        let fresh: Vec<Finding> = {
            let mut state = daemon.monitor.lock();
            let fresh = computed
                .iter()
                .filter(|finding| {
                    !state.computed.iter().any(|old| old.kind == finding.kind && old.subject == finding.subject)
                })
                .cloned()
                .collect();
            state.computed = computed;
            fresh
        };
        for finding in fresh {
            tracing::warn!(kind = finding.kind, "{}", finding.detail["message"].as_str().unwrap_or_default());
            daemon.hub.publish(ApiEvent::Monitor(finding.detail));
        }
    }
}

/// Findings that follow from the state now.
pub async fn compute(daemon: &Daemon) -> Vec<Finding> {
    let mut findings = Vec::new();
    let now = daemon.store.now();
    // Too old: the oldest available job of each queue with a limit.
    for (queue, settings) in &daemon.config.queues {
        let Some(limit) = settings.too_old else { continue };
        let filter = JobFilter {
            queue: Some(queue.clone()),
            state: Some(JobState::Available),
            limit: 1,
            ..JobFilter::default()
        };
        let Ok(oldest) = daemon.store.list(filter).await else { continue };
        for job in oldest {
            let due = job.run_at.unwrap_or(job.created_at);
            let age = Duration::from_millis(now.millis_since(due));
            if age > limit {
                let message = format!(
                    "job {} has waited {} in queue {queue} (limit {}): no worker is taking it — is the queue paused or its pool down?",
                    job.id,
                    human(age),
                    human(limit)
                );
                findings.push(Finding {
                    kind: "too_old",
                    subject: job.id.to_string(),
                    detail: json!({"kind": "too_old", "queue": queue.as_str(), "job": job.id.0,
                        "age_ms": age.as_millis() as u64, "limit_ms": limit.as_millis() as u64, "message": message}),
                });
            }
        }
    }
    // Stuck: running well past the lease deadline.
    let running =
        JobFilter { state: Some(JobState::Running), limit: corvee_core::MAX_LIST_LIMIT, ..JobFilter::default() };
    if let Ok(jobs) = daemon.store.list(running).await {
        for job in jobs {
            let Some(deadline) = job.lease_deadline else { continue };
            let overdue = Duration::from_millis(now.millis_since(deadline));
            if now > deadline && overdue >= daemon.config.monitor.stuck_after {
                let execution = format!("{}.{}", job.id, job.attempt);
                let message = format!(
                    "execution {execution} of job {} has run {} past its lease deadline without heartbeats; \
                     its worker may be hung — it is being stopped",
                    job.id,
                    human(overdue)
                );
                findings.push(Finding {
                    kind: "stuck",
                    subject: execution.clone(),
                    detail: json!({"kind": "stuck", "job": job.id.0, "execution": execution,
                        "overdue_ms": overdue.as_millis() as u64, "message": message}),
                });
            }
        }
    }
    // Spool files: abandoned in tmp/, or refused into failed/.
    let incoming = daemon.dir.join("incoming");
    for (folder, kind) in [("tmp", "orphaned_spool_file"), ("failed", "failed_spool_file")] {
        let Ok(entries) = std::fs::read_dir(incoming.join(folder)) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|extension| extension == "error") {
                continue;
            }
            let age = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| SystemTime::now().duration_since(m).ok());
            let message = match kind {
                "orphaned_spool_file" if age.is_some_and(|age| age >= daemon.config.monitor.orphaned_spool_age) => format!(
                    "spool file {} was never moved into new/ ({} old): its writer died mid-write; delete it or move it into new/",
                    path.display(),
                    human(age.unwrap_or_default())
                ),
                "failed_spool_file" => {
                    // The spool writes `<name>.error` beside `<name>` (which
                    // may have an extension of its own).
                    let mut error_file = path.clone().into_os_string();
                    error_file.push(".error");
                    let reason = std::fs::read_to_string(error_file).unwrap_or_default();
                    format!("spool file {} was refused: {}", path.display(), reason.trim())
                }
                _ => continue,
            };
            findings.push(Finding {
                kind,
                subject: path.display().to_string(),
                detail: json!({"kind": kind, "path": path.display().to_string(), "message": message}),
            });
        }
    }
    findings
}

/// A duration for humans: `15m`, `2h 5m`, `40s`, `300ms`.
pub fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0 => format!("{}ms", duration.as_millis()),
        1..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m {}s", seconds / 60, seconds % 60),
        _ => format!("{}h {}m", seconds / 3600, seconds / 60 % 60),
    }
}
