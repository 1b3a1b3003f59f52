//! What every test needs: pools of test workers with short timeouts, jobs,
//! waiting for events with generous bounded timeouts (never sleeping), and
//! checks that no process was left behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corvee_supervisor::{
    Event, EventSink, JobKey, JobToRun, Outcome, Payload, PoolConfig, RestartPolicy, WorkerPool, WorkerTimeouts,
};
use tokio::sync::mpsc;

/// How long any single expected event may take. Generous: the machine may
/// be busy; a test that needs it has failed anyway.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

pub fn test_worker() -> String {
    env!("CARGO_BIN_EXE_corvee-test-worker").to_owned()
}

/// A pool config for the Rust test worker with `arguments`, and timeouts
/// short enough that misbehaviour is caught in seconds.
pub fn test_pool(name: &str, arguments: &[&str]) -> PoolConfig {
    let mut argv = vec![test_worker()];
    argv.extend(arguments.iter().map(|argument| argument.to_string()));
    let mut config = PoolConfig::new(name, argv);
    config.window = 4;
    config.timeouts = WorkerTimeouts {
        // Short enough that misbehaviour is caught in seconds, long enough
        // that a healthy worker on a busy 2-core machine is never mistaken
        // for a hung one.
        handshake: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(500),
        interrupt_grace: Duration::from_millis(300),
        term_grace: Duration::from_millis(300),
    };
    config.restart = RestartPolicy {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(80),
        healthy_after: Duration::from_secs(60),
        crash_loop_after: 3,
    };
    config
}

pub fn job(job_id: u64, kind: &str, payload: &[u8]) -> JobToRun {
    JobToRun {
        job_id,
        attempt: 1,
        queue: "default".into(),
        kind: kind.into(),
        payload: Payload::Inline(payload.to_vec()),
        checkpoint: None,
        progress: None,
        deadline: None,
    }
}

/// Events as they arrive, with helpers to wait for particular ones.
pub struct Events {
    pub receiver: mpsc::Receiver<Event>,
    /// Every event seen so far, in order.
    pub seen: Vec<Event>,
    /// Worker pids by worker id, from `WorkerStarted`.
    pub pids: HashMap<u64, u32>,
}

impl Events {
    pub fn new(receiver: mpsc::Receiver<Event>) -> Events {
        Events { receiver, seen: Vec::new(), pids: HashMap::new() }
    }

    /// The next event, failing the test after `EVENT_TIMEOUT`.
    pub async fn next(&mut self) -> &Event {
        let event = tokio::time::timeout(EVENT_TIMEOUT, self.receiver.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {EVENT_TIMEOUT:?}; seen so far: {:#?}", self.seen))
            .expect("the event channel closed");
        if let Event::WorkerStarted { worker, pid, .. } = &event {
            self.pids.insert(worker.0, *pid);
        }
        self.seen.push(event);
        self.seen.last().expect("just pushed")
    }

    /// Waits for the first event (from now on) that `predicate` accepts and
    /// returns its index in `seen`.
    pub async fn wait_for(&mut self, what: &str, predicate: impl Fn(&Event) -> bool) -> usize {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = tokio::time::timeout(remaining, self.next())
                .await
                .unwrap_or_else(|_| panic!("waited {EVENT_TIMEOUT:?} for {what}"));
            if predicate(event) {
                return self.seen.len() - 1;
            }
        }
    }

    /// The outcome of `key`: one seen already, or the next to arrive.
    pub async fn outcome(&mut self, key: JobKey) -> &Outcome {
        let seen = self.seen.iter().position(|event| matches!(event, Event::Outcome { job, .. } if *job == key));
        let index = match seen {
            Some(index) => index,
            None => {
                self.wait_for(
                    &format!("the outcome of {key}"),
                    |event| matches!(event, Event::Outcome { job, .. } if *job == key),
                )
                .await
            }
        };
        match &self.seen[index] {
            Event::Outcome { outcome, .. } => outcome,
            _ => unreachable!("matched an outcome"),
        }
    }

    /// Waits for a worker to become ready; returns its worker id.
    pub async fn ready(&mut self) -> u64 {
        let index = self.wait_for("a ready worker", |event| matches!(event, Event::WorkerReady { .. })).await;
        match &self.seen[index] {
            Event::WorkerReady { worker, .. } => worker.0,
            _ => unreachable!(),
        }
    }

    /// Waits for a worker's exit; returns (worker id, "reason; exit status").
    pub async fn exited(&mut self) -> (u64, String) {
        let index = self.wait_for("a worker exit", |event| matches!(event, Event::WorkerExited { .. })).await;
        match &self.seen[index] {
            Event::WorkerExited { worker, reason, exit, .. } => (worker.0, format!("{reason}; {exit}")),
            _ => unreachable!(),
        }
    }

    /// How many outcomes were seen for `key`.
    pub fn outcome_count(&self, key: JobKey) -> usize {
        self.seen.iter().filter(|event| matches!(event, Event::Outcome { job, .. } if *job == key)).count()
    }

    /// Reads events until `future` completes (so a stop that waits for room
    /// in the channel can finish).
    pub async fn drain_while<F: std::future::Future>(&mut self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let deadline = tokio::time::sleep(EVENT_TIMEOUT);
        let mut deadline = std::pin::pin!(deadline);
        loop {
            tokio::select! {
                output = &mut future => {
                    // Whatever was sent before the future finished.
                    while let Ok(event) = self.receiver.try_recv() {
                        self.seen.push(event);
                    }
                    return output;
                }
                event = self.receiver.recv() => {
                    if let Some(event) = event {
                        if let Event::WorkerStarted { worker, pid, .. } = &event {
                            self.pids.insert(worker.0, *pid);
                        }
                        self.seen.push(event);
                    }
                }
                () = &mut deadline => panic!("did not finish within {EVENT_TIMEOUT:?}; events: {:#?}", self.seen),
            }
        }
    }
}

/// A pool of the test worker and its events.
pub fn start_pool(config: PoolConfig) -> (WorkerPool, Events) {
    let (sink, receiver) = EventSink::channel(1024);
    let pool = WorkerPool::start(config, sink, None).expect("valid pool config");
    (pool, Events::new(receiver))
}

/// Whether a process exists at all (a zombie counts: it is not reaped).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The test process's children (zombies included), from /proc.
pub fn children() -> Vec<u32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("reading /proc/self/task").flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(text.split_whitespace().filter_map(|pid| pid.parse::<u32>().ok()));
    }
    children
}

/// Asserts the supervisor left no child process behind.
pub fn assert_no_children() {
    let children = children();
    assert!(children.is_empty(), "processes left behind: {children:?}");
}

pub fn python_worker_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workers/python_worker.py")
}

pub fn python_sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python")
}

/// CRC-32 as zlib computes it (the workers answer with it).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (index, entry) in table.iter_mut().enumerate() {
        let mut value = index as u32;
        for _ in 0..8 {
            value = if value & 1 != 0 { 0xEDB8_8320 ^ (value >> 1) } else { value >> 1 };
        }
        *entry = value;
    }
    !bytes.iter().fold(!0u32, |crc, &byte| table[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8))
}

pub fn trap_signals_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workers/trap_signals.py")
}
