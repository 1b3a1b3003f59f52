//! The measurements, written once against two small traits so that every
//! system is driven by the same loops: a `Producer` (one connection that can
//! have several enqueue requests outstanding) and `System::consume` (start
//! workers on a queue and count the jobs they complete).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Bytes of a small job's payload.
pub const SMALL_PAYLOAD_BYTES: usize = 100;
/// The first bytes of every payload: a zero-padded decimal number (a
/// sequence number, or for the latency test the monotonic clock in
/// nanoseconds when the job was sent).
pub const STAMP_DIGITS: usize = 20;

/// One producer connection. `send` only queues the request; `receive`
/// flushes and waits for the acknowledgement of one outstanding request,
/// which every system here gives only after the jobs are on disk (fsync).
pub trait Producer: Send {
    /// Queues one enqueue request carrying `jobs`: a single job, or a batch
    /// in the system's batch form (see each system for what that is).
    fn send(&mut self, jobs: &[Vec<u8>]) -> Result<()>;
    /// Waits for the oldest outstanding request's acknowledgement.
    fn receive(&mut self) -> Result<()>;
}

/// What the workers of one measurement share with the harness.
#[derive(Debug, Default)]
pub struct Probe {
    pub stop: Arc<AtomicBool>,
    pub completed: AtomicU64,
}

/// Running workers; `finish` (called after `probe.stop` is raised) waits
/// for them and returns the enqueue→start latencies they saw, in
/// nanoseconds (empty unless the queue is `latency`).
pub struct Consumers {
    pub finish: Box<dyn FnOnce() -> Result<Vec<u64>> + Send>,
}

/// A worker on a thread of this process, for [`Consumers::joining`]:
/// `work` records latencies into the vector it is given; an error once
/// `probe.stop` is raised (its connection shut down under it) is a clean
/// stop.
pub type WorkerThread = std::thread::JoinHandle<Result<Vec<u64>>>;

/// Starts a [`WorkerThread`].
pub fn spawn_worker(probe: &Probe, work: impl FnOnce(&mut Vec<u64>) -> Result<()> + Send + 'static) -> WorkerThread {
    let stop = probe.stop.clone();
    std::thread::spawn(move || {
        let mut latencies = Vec::new();
        match work(&mut latencies) {
            Err(_) if stop.load(Ordering::Relaxed) => Ok(latencies),
            Err(error) => Err(error),
            Ok(()) => Ok(latencies),
        }
    })
}

impl Consumers {
    /// Waits for worker threads and gathers their latencies.
    pub fn joining(threads: Vec<WorkerThread>) -> Consumers {
        Consumers {
            finish: Box::new(move || {
                let mut all = Vec::new();
                for thread in threads {
                    all.extend(thread.join().expect("worker thread panicked")?);
                }
                Ok(all)
            }),
        }
    }
}

pub trait System: Sync {
    fn producer(&self, queue: &str) -> Result<Box<dyn Producer>>;
    /// A producer that keeps several requests in flight on its one
    /// connection: `producer` unless the system has a way of its own.
    fn pipelined_producer(&self, queue: &str) -> Result<Box<dyn Producer>> {
        self.producer(queue)
    }
    /// Starts `workers` workers on `queue`, each taking up to `window` jobs
    /// at a time; they count completed jobs in `probe.completed`. Workers
    /// of the queue named `latency` record enqueue→start latencies.
    fn consume(&self, queue: &str, workers: usize, window: usize, probe: Arc<Probe>) -> Result<Consumers>;
}

/// The monotonic clock in nanoseconds: the same clock in every process on
/// the machine, so a worker process can compare it with the producer's.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// A payload of `bytes` bytes (at least `STAMP_DIGITS`): `stamp` as
/// zero-padded digits, then `x`s. Text, so every system carries the same
/// bytes (corvee's JSON API takes it as a string without escaping).
pub fn payload(stamp: u64, bytes: usize) -> Vec<u8> {
    assert!(bytes >= STAMP_DIGITS);
    let mut payload = format!("{stamp:0width$}", width = STAMP_DIGITS).into_bytes();
    payload.resize(bytes, b'x');
    payload
}

/// The stamp at the start of a payload.
pub fn stamp_of(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload.get(..STAMP_DIGITS)?).ok()?.parse().ok()
}

/// Durable enqueue rate: `producers` threads, each on its own connection,
/// each keeping `in_flight` requests of `batch` jobs outstanding for
/// `seconds`. Returns acknowledged jobs per second.
pub fn enqueue_rate(
    system: &dyn System,
    queue: &str,
    producers: usize,
    in_flight: usize,
    batch: usize,
    seconds: f64,
) -> Result<f64> {
    let barrier = Barrier::new(producers);
    let started = Instant::now();
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..producers)
            .map(|_| {
                scope.spawn(|| -> Result<(u64, Instant)> {
                    let mut producer =
                        if in_flight > 1 { system.pipelined_producer(queue)? } else { system.producer(queue)? };
                    barrier.wait();
                    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
                    let mut sequence = 0u64;
                    let mut outstanding = 0usize;
                    let mut acknowledged = 0u64;
                    loop {
                        let sending = Instant::now() < deadline;
                        while sending && outstanding < in_flight {
                            let jobs: Vec<Vec<u8>> = (0..batch)
                                .map(|_| {
                                    sequence += 1;
                                    payload(sequence, SMALL_PAYLOAD_BYTES)
                                })
                                .collect();
                            producer.send(&jobs)?;
                            outstanding += 1;
                        }
                        if outstanding == 0 {
                            return Ok((acknowledged, Instant::now()));
                        }
                        producer.receive()?;
                        outstanding -= 1;
                        acknowledged += batch as u64;
                    }
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().expect("producer thread panicked")).collect::<Vec<_>>()
    });
    let mut total = 0u64;
    let mut last = started;
    for count in counts {
        let (acknowledged, ended) = count?;
        total += acknowledged;
        last = last.max(ended);
    }
    Ok(total as f64 / (last - started).as_secs_f64())
}

/// Shape of an end-to-end run.
#[derive(Debug, Clone, Copy)]
pub struct EndToEnd {
    pub producers: usize,
    pub batch: usize,
    pub workers: usize,
    pub window: usize,
    pub payload_bytes: usize,
    pub seconds: f64,
    /// Producers pause while this many jobs are enqueued but not completed,
    /// so the figure is a steady state, not the time to drain a pile.
    pub max_backlog: u64,
}

/// End to end: producers enqueue batches while workers take and complete
/// them; after `seconds` the producers stop and the run ends when every
/// acknowledged job is completed. Returns completed jobs per second over
/// the whole run, first send to last completion.
pub fn end_to_end(system: &dyn System, queue: &str, shape: EndToEnd) -> Result<f64> {
    let probe = Arc::new(Probe::default());
    let consumers = system.consume(queue, shape.workers, shape.window, probe.clone())?;
    let acknowledged = AtomicU64::new(0);
    let barrier = Barrier::new(shape.producers + 1);
    let outcome = std::thread::scope(|scope| -> Result<(u64, Duration)> {
        let handles: Vec<_> = (0..shape.producers)
            .map(|index| {
                let (probe, acknowledged, barrier) = (&probe, &acknowledged, &barrier);
                scope.spawn(move || -> Result<()> {
                    let mut producer = system.producer(queue)?;
                    barrier.wait();
                    let deadline = Instant::now() + Duration::from_secs_f64(shape.seconds);
                    let mut sequence = (index as u64) << 40;
                    while Instant::now() < deadline {
                        let backlog = acknowledged
                            .load(Ordering::Relaxed)
                            .saturating_sub(probe.completed.load(Ordering::Relaxed));
                        if backlog >= shape.max_backlog {
                            std::thread::sleep(Duration::from_micros(200));
                            continue;
                        }
                        let jobs: Vec<Vec<u8>> = (0..shape.batch)
                            .map(|_| {
                                sequence += 1;
                                payload(sequence, shape.payload_bytes)
                            })
                            .collect();
                        producer.send(&jobs)?;
                        producer.receive()?;
                        acknowledged.fetch_add(shape.batch as u64, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        for handle in handles {
            handle.join().expect("producer thread panicked")?;
        }
        let total = acknowledged.load(Ordering::Relaxed);
        let elapsed = wait_for_completions(&probe, total, started)?;
        Ok((total, elapsed))
    });
    probe.stop.store(true, Ordering::Relaxed);
    let finished = (consumers.finish)();
    let (total, elapsed) = outcome?;
    finished?;
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// Waits until `probe` counts `total` completions; returns the time since
/// `started` when it did.
fn wait_for_completions(probe: &Probe, total: u64, started: Instant) -> Result<Duration> {
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        let completed = probe.completed.load(Ordering::Relaxed);
        if completed >= total {
            return Ok(started.elapsed());
        }
        if Instant::now() > give_up {
            bail!("only {completed} of {total} acknowledged jobs completed within 120 s");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Enqueue→start latency: one producer sends one job every `1/rate`
/// seconds, each stamped with the monotonic clock just before it is sent,
/// and waits for its acknowledgement; workers note the clock when a job
/// reaches them. Returns the latencies in nanoseconds and the rate achieved.
pub fn latency(system: &dyn System, rate: f64, seconds: f64, workers: usize, window: usize) -> Result<(Vec<u64>, f64)> {
    let queue = "latency";
    let probe = Arc::new(Probe::default());
    let consumers = system.consume(queue, workers, window, probe.clone())?;
    let outcome = (|| -> Result<(u64, f64)> {
        let mut producer = system.producer(queue)?;
        let count = (rate * seconds) as u64;
        let interval = Duration::from_secs_f64(1.0 / rate);
        let started = Instant::now();
        for index in 0..count {
            let due = started + interval * index as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            producer.send(&[payload(monotonic_ns(), SMALL_PAYLOAD_BYTES)])?;
            producer.receive()?;
        }
        let achieved = count as f64 / started.elapsed().as_secs_f64();
        wait_for_completions(&probe, count, started)?;
        Ok((count, achieved))
    })();
    probe.stop.store(true, Ordering::Relaxed);
    let latencies = (consumers.finish)();
    let (count, achieved) = outcome?;
    let latencies = latencies?;
    if latencies.len() as u64 != count {
        bail!("{} latencies recorded for {count} jobs", latencies.len());
    }
    Ok((latencies, achieved))
}

/// The `quantile` (0..=1) of `values`, nearest rank.
pub fn percentile(values: &mut [u64], quantile: f64) -> u64 {
    assert!(!values.is_empty());
    values.sort_unstable();
    let rank = ((quantile * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}
