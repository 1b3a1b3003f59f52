//! `kill -9` of the daemon: under a load of concurrent producers, at random
//! moments, again and again; every enqueue that was acknowledged survives
//! and every job ends completed, and nothing a killed daemon started
//! outlives it — workers leave on EOF, and the next daemon kills what is
//! left before it leases anything.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use corvee::client::{Client, CommandRequest, JobRequest, JobState, ListFilter};

use super::daemon::{is_alive, poll_until, TestDaemon, STEP_TIMEOUT};
use super::example_worker::{pool, Example};

/// How many times the daemon is killed.
const KILLS: usize = 20;
/// Producer threads enqueueing through the client library.
const PRODUCERS: usize = 4;
/// At most this many acknowledged enqueues between two kills.
const MAX_ENQUEUES_BETWEEN_KILLS: u64 = 30;

/// A small deterministic generator (xorshift64*), seeded per run and
/// printed, so a failing schedule can be replayed with `CORVEE_E2E_SEED`.
struct Random(u64);

impl Random {
    fn seeded() -> Random {
        let seed = match std::env::var("CORVEE_E2E_SEED") {
            Ok(seed) => seed.parse().expect("CORVEE_E2E_SEED is a number"),
            Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
        };
        eprintln!("kill schedule seed: CORVEE_E2E_SEED={seed}");
        Random(seed | 1)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

/// What the producers and the killer share.
#[derive(Default)]
struct Load {
    state: Mutex<LoadState>,
    changed: Condvar,
}

#[derive(Default)]
struct LoadState {
    /// Every acknowledged enqueue: the id and the payload an echo job
    /// returns (`None` for a noop).
    acknowledged: Vec<(u64, Option<String>)>,
    /// Whether a daemon serves (false from just before a kill until the
    /// next one is ready).
    up: bool,
    /// How many kills have begun: a request that fails across one was cut
    /// off by it.
    kills: u64,
    stop: bool,
    /// Enqueues refused while a daemon was up: there must be none.
    unexpected_errors: Vec<String>,
}

impl Load {
    fn lock(&self) -> std::sync::MutexGuard<'_, LoadState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Blocks until `condition` holds, failing after [`STEP_TIMEOUT`].
    fn wait_until(&self, what: &str, condition: impl Fn(&LoadState) -> bool) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut state = self.lock();
        while !condition(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "waited {STEP_TIMEOUT:?} for {what}");
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
        }
    }

    fn set_up(&self, up: bool) {
        let mut state = self.lock();
        state.up = up;
        if !up {
            state.kills += 1;
        }
        drop(state);
        self.changed.notify_all();
    }
}

fn produce(load: &Load, client: &Client, producer: usize) {
    for n in 0.. {
        let kills_before = {
            let mut state = load.lock();
            while !state.up && !state.stop {
                state = load.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if state.stop {
                return;
            }
            state.kills
        };
        let (request, payload) = match n % 4 {
            3 => (JobRequest::new("noop").on_queue("work"), None),
            _ => {
                let payload = format!("producer {producer} job {n}");
                (JobRequest::new("echo").on_queue("work").with_text_payload(payload.clone()), Some(payload))
            }
        };
        let answer = client.enqueue(&request);
        let mut state = load.lock();
        match answer {
            Ok(job) => state.acknowledged.push((job.id, payload)),
            // The daemon was killed under this request: not acknowledged,
            // so it may or may not exist; nothing to check.
            Err(_) if !state.up || state.kills != kills_before => {}
            Err(error) => state.unexpected_errors.push(format!("{error:#}")),
        }
        drop(state);
        load.changed.notify_all();
    }
}

/// Live processes whose environment has `CORVEE_E2E_MARK=<mark>` with a
/// generation below `generation`: workers of daemons killed since.
fn workers_of_earlier_daemons(dir: &Path, generation: u64) -> Vec<u32> {
    let prefix = format!("CORVEE_E2E_MARK={}#", dir.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(environment) = std::fs::read(entry.path().join("environ")) else { continue };
        let marked = environment.split(|byte| *byte == 0).find_map(|variable| {
            let variable = std::str::from_utf8(variable).ok()?;
            variable.strip_prefix(&prefix)?.parse::<u64>().ok()
        });
        if marked.is_some_and(|marked| marked < generation) && is_alive(pid) {
            found.push(pid);
        }
    }
    found
}

fn config(dir: &Path, generation: u64) -> String {
    let mark = format!("{}#{generation}", dir.display());
    format!(
        "[queues.work]\nmax_attempts = 1000\nretry_base = \"10ms\"\nretry_max = \"50ms\"\n{}",
        pool(Example::Rust, "work", &["work"], 2, &[("CORVEE_E2E_MARK", &mark)])
    )
}

#[test]
fn kill_9_at_random_moments_under_load_loses_no_acknowledged_job() {
    let mut random = Random::seeded();
    let mut daemon = TestDaemon::prepare("");
    let dir = daemon.dir().to_path_buf();
    let mut generation = 0;
    daemon.write_config(&config(&dir, generation));
    daemon.launch();

    let load = Arc::new(Load::default());
    load.set_up(true);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let (load, client) = (Arc::clone(&load), daemon.client.clone().with_request_timeout(Some(STEP_TIMEOUT)));
            std::thread::spawn(move || produce(&load, &client, producer))
        })
        .collect();

    for _ in 0..KILLS {
        let target = load.lock().acknowledged.len() as u64 + random.below(MAX_ENQUEUES_BETWEEN_KILLS + 1);
        load.wait_until("enqueues to be acknowledged", |state| state.acknowledged.len() as u64 >= target);
        load.set_up(false);
        daemon.kill_9();
        generation += 1;
        daemon.write_config(&config(&dir, generation));
        daemon.launch();
        load.set_up(true);
        poll_until("the workers of the killed daemons to be gone", || {
            workers_of_earlier_daemons(&dir, generation).is_empty()
        });
    }
    load.lock().stop = true;
    load.changed.notify_all();
    for producer in producers {
        producer.join().expect("a producer thread");
    }
    let state = std::mem::take(&mut *load.lock());
    assert!(state.unexpected_errors.is_empty(), "refused while a daemon was up: {:?}", state.unexpected_errors);
    assert!(state.acknowledged.len() >= KILLS, "the load ran: {} enqueues", state.acknowledged.len());

    // Every acknowledged job exists and completes, with its own result.
    for (id, payload) in &state.acknowledged {
        let job = daemon.wait_finished(*id);
        assert_eq!(job.state, JobState::Completed, "job {id}: {job:#?}");
        match payload {
            Some(payload) => assert_eq!(daemon.client.result(*id).unwrap(), payload.as_bytes(), "job {id}"),
            None => assert_eq!(job.result_bytes, None, "job {id}: a noop has no result"),
        }
    }
    // And no job at all (acknowledged or not) is left behind unfinished.
    let mut seen = BTreeSet::new();
    let mut lost_attempts = 0;
    let mut filter = ListFilter { limit: Some(1000), ..ListFilter::default() };
    loop {
        let page = daemon.client.list(&filter).unwrap();
        for job in &page.jobs {
            if !job.state.is_finished() {
                assert_eq!(daemon.wait_finished(job.id).state, JobState::Completed, "job {}", job.id);
            } else {
                assert_eq!(job.state, JobState::Completed, "job {}: {job:#?}", job.id);
            }
            lost_attempts += job.errors.iter().filter(|error| error.error.starts_with("lost")).count();
            seen.insert(job.id);
        }
        match page.next_after {
            Some(after) => filter.after = Some(after),
            None => break,
        }
    }
    let acknowledged: BTreeSet<u64> = state.acknowledged.iter().map(|(id, _)| *id).collect();
    assert!(acknowledged.is_subset(&seen), "every acknowledged job is listed");
    eprintln!(
        "{KILLS} kills: {} enqueues acknowledged, {} jobs in all, {lost_attempts} attempts lost to a kill",
        acknowledged.len(),
        seen.len()
    );

    let status = daemon.stop_with(rustix::process::Signal::TERM);
    assert_eq!(status.code(), Some(0), "{}", daemon.log_text());
    poll_until("every worker to be gone", || workers_of_earlier_daemons(&dir, u64::MAX).is_empty());
}

#[test]
fn a_command_left_running_by_a_killed_daemon_is_killed_before_its_job_runs_again() {
    // The lost attempt is retried after a short backoff.
    let mut daemon = TestDaemon::start("[queues.commands]\nretry_base = \"10ms\"\n");
    let scratch = tempfile::tempdir().expect("a directory for the command job");
    // The first attempt records its pid (its process group's) and sleeps;
    // the second ends at once.
    let script = "if [ -e pid ]; then exit 0; fi; echo $$ > pid.tmp; mv pid.tmp pid; exec sleep 60";
    let mut command = CommandRequest::new(vec!["sh".into(), "-c".into(), script.into()]);
    command.cwd = Some(scratch.path().to_path_buf());
    command.max_attempts = Some(2);
    let id = daemon.client.enqueue_command(&command).unwrap().id;
    let pid_file = scratch.path().join("pid");
    poll_until("the command to start", || pid_file.exists());
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().expect("a pid");
    // The daemon records the group right after the spawn returns, and the
    // child may get this far before it does (ARCHITECTURE.md, leftovers.rs).
    poll_until("the command's group in the daemon's ledger", || daemon.ledger_groups().contains(&pid));

    daemon.kill_9();
    assert!(is_alive(pid), "a command job has no socket to notice its daemon died: it outlives it");
    daemon.launch();
    // The new daemon kills leftovers before it serves or leases anything.
    assert!(!is_alive(pid), "the first attempt's process {pid} still runs after the restart");

    let job = daemon.wait_finished(id);
    assert_eq!((job.state, job.attempt), (JobState::Completed, 2), "{job:#?}");
    assert_eq!(job.errors.len(), 1, "{job:#?}");
    assert!(job.errors[0].error.starts_with("lost"), "{job:#?}");
}
