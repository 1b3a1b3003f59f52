//! A pool of one example worker and its events, waited on with generous
//! bounded timeouts (never sleeping).

use std::path::Path;
use std::time::Duration;

use corvee_supervisor::{Event, EventSink, JobKey, JobResult, JobToRun, Outcome, Payload, PoolConfig, WorkerPool};
use tokio::sync::mpsc;

/// How long any single expected event may take on a busy machine.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Example {
    Rust,
    Python,
}

/// Defines `NAME::rust` and `NAME::python`, each calling `NAME(Example)`.
macro_rules! for_both_examples {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rust() {
                super::$name($crate::support::Example::Rust).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn python() {
                super::$name($crate::support::Example::Python).await;
            }
        }
    )*};
}
pub(crate) use for_both_examples;

/// A one-process pool of the example worker.
pub fn example_pool(example: Example) -> PoolConfig {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = |relative: &str| repository.join(relative).to_str().expect("utf-8 path").to_owned();
    let mut config = match example {
        Example::Rust => PoolConfig::new("example-rust", vec![env!("CARGO_BIN_EXE_corvee-example-worker").into()]),
        Example::Python => {
            let mut config = PoolConfig::new(
                "example-python",
                vec!["python3".into(), "-u".into(), path("examples/python/worker.py")],
            );
            config.env.push(("PYTHONPATH".into(), path("sdk/python")));
            config.env.push(("PYTHONDONTWRITEBYTECODE".into(), "1".into()));
            config
        }
    };
    config.window = 4;
    config.timeouts.handshake = Duration::from_secs(20);
    config.timeouts.interrupt_grace = Duration::from_secs(20);
    config
}

pub fn job(job_id: u64, attempt: u32, kind: &str, payload: &str) -> JobToRun {
    JobToRun {
        job_id,
        attempt,
        queue: "demo".into(),
        kind: kind.into(),
        payload: Payload::Inline(payload.as_bytes().to_vec()),
        checkpoint: None,
        progress: None,
        deadline: None,
    }
}

pub struct Events {
    pub receiver: mpsc::Receiver<Event>,
    pub seen: Vec<Event>,
}

impl Events {
    /// Waits for the first event (from now on) that `predicate` accepts.
    pub async fn wait_for(&mut self, what: &str, predicate: impl Fn(&Event) -> bool) -> &Event {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.receiver.recv())
                .await
                .unwrap_or_else(|_| panic!("waited {EVENT_TIMEOUT:?} for {what}; seen: {:#?}", self.seen))
                .expect("the event channel closed");
            let accepted = predicate(&event);
            self.seen.push(event);
            if accepted {
                return self.seen.last().expect("just pushed");
            }
        }
    }

    /// The outcome of `key`, seen already or the next to arrive.
    pub async fn outcome(&mut self, key: JobKey) -> &Outcome {
        let is_it = |event: &Event| matches!(event, Event::Outcome { job, .. } if *job == key);
        let event = match self.seen.iter().position(is_it) {
            Some(index) => &self.seen[index],
            None => self.wait_for(&format!("the outcome of {key}"), is_it).await,
        };
        let Event::Outcome { outcome, .. } = event else { unreachable!() };
        outcome
    }

    /// The text result of `key`, which must have completed with one.
    pub async fn result_text(&mut self, key: JobKey) -> String {
        match self.outcome(key).await {
            Outcome::Completed { result: Some(JobResult::Inline(bytes)) } => {
                String::from_utf8_lossy(bytes).into_owned()
            }
            other => panic!("{key}: expected a result, got {other:?}"),
        }
    }
}

pub fn start_pool(config: PoolConfig) -> (WorkerPool, Events) {
    let (sink, receiver) = EventSink::channel(1024);
    let pool = WorkerPool::start(config, sink, None).expect("valid pool config");
    (pool, Events { receiver, seen: Vec::new() })
}

/// Stops the pool, reading events meanwhile.
pub async fn stop(pool: WorkerPool, events: &mut Events) {
    let mut stopping = std::pin::pin!(pool.stop(Duration::from_secs(10)));
    loop {
        tokio::select! {
            () = &mut stopping => return,
            event = events.receiver.recv() => events.seen.extend(event),
            () = tokio::time::sleep(EVENT_TIMEOUT) => panic!("the pool did not stop within {EVENT_TIMEOUT:?}"),
        }
    }
}
