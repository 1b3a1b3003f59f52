//! What every test needs: a pool of one SDK's conformance worker under the
//! real supervisor, jobs, waiting for events with generous bounded timeouts
//! (never sleeping), and checks that no process was left behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corvee_supervisor::{
    Event, EventSink, JobKey, JobResult, JobToRun, Outcome, Payload, PoolConfig, RestartPolicy, WorkerPool,
    WorkerTimeouts,
};
use tokio::sync::mpsc;

/// How long any single expected event may take. Generous: the machine may
/// be busy; a test that needs it has failed anyway.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which SDK's worker a test runs. Both answer every kind alike, so each
/// test runs against both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sdk {
    Rust,
    Python,
}

/// Defines `NAME::rust` and `NAME::python`, each calling `NAME(Sdk)`.
macro_rules! for_both_sdks {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rust() {
                super::$name($crate::support::Sdk::Rust).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn python() {
                super::$name($crate::support::Sdk::Python).await;
            }
        }
    )*};
}
pub(crate) use for_both_sdks;

pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn python_sdk_dir() -> PathBuf {
    repository_root().join("sdk/python")
}

/// The program and arguments that start `sdk`'s conformance worker.
pub fn worker_argv(sdk: Sdk, arguments: &[&str]) -> Vec<String> {
    let mut argv = match sdk {
        Sdk::Rust => vec![env!("CARGO_BIN_EXE_corvee-worker-test-worker").to_owned()],
        Sdk::Python => vec![
            "python3".to_owned(),
            "-u".to_owned(),
            python_sdk_dir().join("tests/conformance_worker.py").to_str().expect("utf-8 path").to_owned(),
        ],
    };
    argv.extend(arguments.iter().map(|argument| argument.to_string()));
    argv
}

/// The environment a worker of `sdk` needs.
pub fn worker_env(sdk: Sdk) -> Vec<(String, String)> {
    match sdk {
        Sdk::Rust => Vec::new(),
        Sdk::Python => vec![
            ("PYTHONPATH".to_owned(), python_sdk_dir().to_str().expect("utf-8 path").to_owned()),
            ("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned()),
        ],
    }
}

/// A one-process pool of `sdk`'s conformance worker with `arguments`, and
/// timeouts short enough that a hung or silent worker shows in seconds but
/// long enough that a healthy one on a busy 2-core machine never looks hung.
pub fn sdk_pool(sdk: Sdk, name: &str, arguments: &[&str]) -> PoolConfig {
    let mut config = PoolConfig::new(format!("{name}-{sdk:?}").to_lowercase(), worker_argv(sdk, arguments));
    config.env = worker_env(sdk);
    config.window = 4;
    config.timeouts = WorkerTimeouts {
        // Python starts in ~50 ms idle, seconds on a loaded machine.
        handshake: Duration::from_secs(20),
        heartbeat_interval: Duration::from_millis(500),
        interrupt_grace: Duration::from_secs(20),
        term_grace: Duration::from_secs(2),
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

pub fn key(job_id: u64, attempt: u32) -> JobKey {
    JobKey { job_id, attempt }
}

/// Events as they arrive, with helpers to wait for particular ones.
pub struct Events {
    pub receiver: mpsc::Receiver<Event>,
    /// Every event seen so far, in order.
    pub seen: Vec<Event>,
}

impl Events {
    /// The next event, failing the test after `EVENT_TIMEOUT`.
    pub async fn next(&mut self) -> &Event {
        let event = tokio::time::timeout(EVENT_TIMEOUT, self.receiver.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {EVENT_TIMEOUT:?}; seen so far: {:#?}", self.seen))
            .expect("the event channel closed");
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

    /// The first event `predicate` accepts: one seen already, or the next
    /// to arrive. Returns its index in `seen`.
    pub async fn find(&mut self, what: &str, predicate: impl Fn(&Event) -> bool) -> usize {
        match self.seen.iter().position(&predicate) {
            Some(index) => index,
            None => self.wait_for(what, predicate).await,
        }
    }

    /// The outcome of `key`: one seen already, or the next to arrive.
    pub async fn outcome(&mut self, key: JobKey) -> &Outcome {
        let index = self
            .find(&format!("the outcome of {key}"), |event| matches!(event, Event::Outcome { job, .. } if *job == key))
            .await;
        match &self.seen[index] {
            Event::Outcome { outcome, .. } => outcome,
            _ => unreachable!("matched an outcome"),
        }
    }

    /// The result of `key`, which must have completed with inline bytes, as
    /// text.
    pub async fn result_text(&mut self, key: JobKey) -> String {
        match self.outcome(key).await {
            Outcome::Completed { result: Some(JobResult::Inline(bytes)) } => {
                String::from_utf8_lossy(bytes).into_owned()
            }
            other => panic!("{key}: expected an inline result, got {other:?}"),
        }
    }

    /// Waits for a worker to become ready; returns its `WorkerReady` event.
    pub async fn ready(&mut self) -> &Event {
        let index = self.wait_for("a ready worker", |event| matches!(event, Event::WorkerReady { .. })).await;
        &self.seen[index]
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
                    while let Ok(event) = self.receiver.try_recv() {
                        self.seen.push(event);
                    }
                    return output;
                }
                event = self.receiver.recv() => {
                    if let Some(event) = event {
                        self.seen.push(event);
                    }
                }
                () = &mut deadline => panic!("did not finish within {EVENT_TIMEOUT:?}; events: {:#?}", self.seen),
            }
        }
    }
}

/// Starts a pool and returns it with its events.
pub fn start_pool(config: PoolConfig) -> (WorkerPool, Events) {
    let (sink, receiver) = EventSink::channel(1024);
    let pool = WorkerPool::start(config, sink, None).expect("valid pool config");
    (pool, Events { receiver, seen: Vec::new() })
}

/// Stops the pool gracefully, reading events meanwhile, and checks that no
/// process was left behind.
pub async fn stop(pool: WorkerPool, events: &mut Events) {
    events.drain_while(pool.stop(Duration::from_secs(10))).await;
    assert_no_children();
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
