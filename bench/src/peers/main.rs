//! corvee side by side with the systems a user would pick instead —
//! beanstalkd, Redis, a PostgreSQL `FOR UPDATE SKIP LOCKED` table and
//! task-spooler — measured by the same loops on the same machine, every
//! enqueue acknowledged only after an fsync. `bench/run-peers` starts each
//! server on a scratch directory and runs this binary once per system;
//! see bench/README.md for the figures.
//!
//! Method, the same for every system (`harness.rs` has the loops):
//! - payloads are text: 20 digits (a sequence number, or the monotonic
//!   clock for latency jobs) then `x`s, 100 bytes unless said otherwise;
//! - every client talks to its server over a Unix socket; every producer
//!   and worker has its own connection; producers and workers are threads
//!   of this process (corvee's workers are processes of its daemon);
//! - durable enqueue rate: jobs acknowledged per second over `--seconds`,
//!   with 1 producer (one request at a time), 4 producers, 1 producer with
//!   64 single-job requests in flight (pipelined on its connection), 64
//!   producers (64 connections, one request each: what a connection pool
//!   does), and 1 producer sending batches of 64 jobs in the system's batch
//!   form;
//! - end to end: 4 producers sending batches of 64 while 4 workers take up
//!   to 64 jobs at a time, do nothing, and complete them; producers pause
//!   while 20,000 jobs are pending; completed jobs per second from the
//!   first send to the last completion;
//! - enqueue→start latency: 1 producer sends a job every millisecond for 5
//!   seconds, waiting for each acknowledgement; the worker notes the clock
//!   when the job reaches it; p50 and p99 over all jobs;
//! - 64-KiB payloads end to end: as end to end with batches of 16 and at
//!   most 1,024 jobs pending, in MB/s;
//! - command jobs: 1,000 `true` commands from one producer, from the first
//!   enqueue until all have run (corvee and task-spooler only).
//!
//! Usage: `peers SYSTEM [--seconds S] [--only TEXT] ENDPOINT...` (`--only`:
//! just the figures whose names contain TEXT), `peers table --results
//! FILE`, `peers disk --dir DIR` (the disk's fsync rate, a thread round trip and
//! the ideal server's rate for 4 closed-loop clients, for context: see
//! `ceiling.rs`), and
//! `peers corvee-worker --latency-dir DIR` (run by corvee's daemon).

mod beanstalkd;
mod ceiling;
mod conn;
mod corvee;
mod harness;
mod postgres;
mod redis;
mod table;
mod tsp;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use harness::{EndToEnd, System, SMALL_PAYLOAD_BYTES};

fn main() -> Result<()> {
    let mut arguments = std::env::args().skip(1);
    let command = arguments.next().unwrap_or_default();
    let options = parse_options(arguments)?;
    let path = |name: &str| -> Result<PathBuf> {
        options.get(name).map(PathBuf::from).with_context(|| format!("{command} needs --{name}"))
    };
    let seconds: f64 = options.get("seconds").map(|seconds| seconds.parse()).transpose()?.unwrap_or(3.0);
    let only = Only(options.get("only").cloned());
    match command.as_str() {
        "corvee-worker" => corvee::worker(&path("latency-dir")?),
        "ceiling-clients" => {
            let clients = options.get("clients").context("ceiling-clients needs --clients")?.parse()?;
            ceiling::run_clients(&path("socket")?, clients, seconds)
        }
        "table" => {
            let lines = std::fs::read_to_string(path("results")?).context("reading the results")?;
            print!("{}", table::render(&lines));
            Ok(())
        }
        "corvee" => {
            let corvee = corvee::Corvee { socket: path("socket")?, latency_dir: path("latency-dir")? };
            measure("corvee", &corvee, seconds, &only)?;
            if only.wants("command_jobs_true") {
                report("corvee", "command_jobs_true", corvee.command_jobs(COMMAND_JOBS)?, "jobs/s");
            }
            Ok(())
        }
        "beanstalkd" => measure("beanstalkd", &beanstalkd::Beanstalkd { socket: path("socket")? }, seconds, &only),
        "redis" => measure("redis", &redis::Redis { socket: path("socket")? }, seconds, &only),
        "postgres" => {
            let port = options.get("port").context("postgres needs --port")?.parse()?;
            measure("postgres", &postgres::Postgres::new(path("socket-dir")?, port)?, seconds, &only)
        }
        "disk" => {
            report("disk", "fdatasync_4k", disk_fdatasync_rate(&path("dir")?)?, "ops/s");
            report("cpu", "thread_round_trip", thread_round_trip_micros()?, "us");
            for grouping in ceiling::Grouping::ALL {
                let rate = ceiling::closed_loop_rate(&path("dir")?, CEILING_CLIENTS, grouping, CEILING_SECONDS)?;
                report("ceiling", &format!("closed_loop_4_clients_{}", grouping.name()), rate, "req/s");
            }
            Ok(())
        }
        "tsp" => {
            if only.wants("command_jobs_true") {
                report("tsp", "command_jobs_true", tsp::command_jobs(&path("socket")?, COMMAND_JOBS)?, "jobs/s");
            }
            Ok(())
        }
        _ => bail!(
            "usage: peers corvee|beanstalkd|redis|postgres|tsp [--seconds S] [--only TEXT] ENDPOINT..., \
             peers table --results FILE, peers disk --dir DIR, or peers corvee-worker --latency-dir DIR"
        ),
    }
}

const COMMAND_JOBS: u64 = 1000;

/// The ideal server's probe (`ceiling.rs`): as many clients as the
/// "4 producers" figure has, for two seconds per way of grouping.
const CEILING_CLIENTS: usize = 4;
const CEILING_SECONDS: f64 = 2.0;

fn parse_options(arguments: impl Iterator<Item = String>) -> Result<HashMap<String, String>> {
    let mut options = HashMap::new();
    let mut arguments = arguments.peekable();
    while let Some(argument) = arguments.next() {
        let name = argument.strip_prefix("--").with_context(|| format!("unexpected argument {argument:?}"))?;
        let value = arguments.next().with_context(|| format!("--{name} needs a value"))?;
        options.insert(name.to_owned(), value);
    }
    Ok(options)
}

fn report(system: &str, figure: &str, value: f64, unit: &str) {
    println!("{system}_{figure}: {value:.0} {unit}");
}

/// Which figures to measure: all, or those whose names contain a text.
struct Only(Option<String>);

impl Only {
    fn wants(&self, figure: &str) -> bool {
        self.0.as_deref().is_none_or(|text| figure.contains(text))
    }
}

/// Every figure but command jobs, for one system.
fn measure(name: &str, system: &dyn System, seconds: f64, only: &Only) -> Result<()> {
    for (figure, producers, in_flight, batch) in [
        ("enqueue_1_producer", 1, 1, 1),
        ("enqueue_4_producers", 4, 1, 1),
        ("enqueue_1_producer_64_in_flight", 1, 64, 1),
        ("enqueue_64_producers", 64, 1, 1),
        ("enqueue_1_producer_batches_of_64", 1, 1, 64),
    ] {
        if !only.wants(figure) {
            continue;
        }
        let rate = harness::enqueue_rate(system, "enqueue", producers, in_flight, batch, seconds)
            .with_context(|| format!("{name}: {figure}"))?;
        report(name, figure, rate, "jobs/s");
    }
    let small = EndToEnd {
        producers: 4,
        batch: 64,
        workers: 4,
        window: 64,
        payload_bytes: SMALL_PAYLOAD_BYTES,
        seconds,
        max_backlog: 20_000,
    };
    if only.wants("end_to_end_4_workers") {
        let rate = harness::end_to_end(system, "end_to_end", small).with_context(|| format!("{name}: end to end"))?;
        report(name, "end_to_end_4_workers", rate, "jobs/s");
    }
    if only.wants("latency_p50") || only.wants("latency_p99") || only.wants("latency_rate") {
        let (mut latencies, achieved) =
            harness::latency(system, 1000.0, 5.0, 4, 64).with_context(|| format!("{name}: latency"))?;
        report(name, "latency_p50", harness::percentile(&mut latencies, 0.50) as f64 / 1e3, "us");
        report(name, "latency_p99", harness::percentile(&mut latencies, 0.99) as f64 / 1e3, "us");
        report(name, "latency_rate", achieved, "jobs/s");
    }
    if only.wants("payload_64kib_end_to_end") {
        let large = EndToEnd { batch: 16, window: 16, payload_bytes: 64 << 10, max_backlog: 1024, ..small };
        let rate = harness::end_to_end(system, "payload", large).with_context(|| format!("{name}: 64-KiB payloads"))?;
        report(name, "payload_64kib_end_to_end", rate * (64 << 10) as f64 / 1e6, "MB/s");
    }
    Ok(())
}

/// What one request/reply between two threads over a Unix socket costs
/// here, one byte each way (two wake-ups), averaged over 20,000. A closed-
/// loop producer pays it at least once per request, and more for each
/// hand-off between threads inside the server: with the disk's fsync rate,
/// it bounds what few producers can reach.
fn thread_round_trip_micros() -> Result<f64> {
    use std::io::{Read, Write};
    let (mut client, mut server) = std::os::unix::net::UnixStream::pair()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let mut byte = [0u8; 1];
        while server.read(&mut byte)? == 1 {
            server.write_all(&byte)?;
        }
        Ok(())
    });
    const ROUNDS: u32 = 20_000;
    let mut byte = [0u8; 1];
    let started = std::time::Instant::now();
    for _ in 0..ROUNDS {
        client.write_all(b"x")?;
        client.read_exact(&mut byte)?;
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
    drop(client);
    echo.join().map_err(|_| anyhow::anyhow!("the echo thread panicked"))??;
    Ok(micros)
}

/// What the disk under `dir` allows right now: 4-KiB overwrites of a
/// preallocated file, each followed by `fdatasync`, for one second. Every
/// figure above is bounded by this when requests are not grouped, and on a
/// shared machine it moves with what the neighbours do.
fn disk_fdatasync_rate(dir: &std::path::Path) -> Result<f64> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fdatasync-probe");
    let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
    let block = vec![7u8; 4096];
    for index in 0..256u64 {
        file.write_all_at(&block, index * 4096)?;
    }
    file.sync_all()?;
    let started = std::time::Instant::now();
    let mut count = 0u64;
    while started.elapsed() < std::time::Duration::from_secs(1) {
        file.write_all_at(&block, (count % 256) * 4096)?;
        file.sync_data()?;
        count += 1;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(rate)
}
