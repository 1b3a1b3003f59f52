//! The job-store benchmark: enqueue → lease → complete cycles per second
//! with 1 and 64 concurrent clients, batched enqueue throughput, the time
//! to reopen a store holding 1,000,000 queued jobs, and resident memory per
//! queued 100-byte job.
//!
//! Run: `cargo run --release -p bench --bin store [-- --dir DIR --seconds S --jobs N]`
//! Every figure is printed on its own line as `name: value unit`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corvee_core::{Kind, LeaseHolder, NewJob, QueueName};
use corvee_store::{LocalStore, LocalStoreOptions, Store};

struct Args {
    dir: Option<PathBuf>,
    seconds: f64,
    jobs: u64,
    reopen_child: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args { dir: None, seconds: 3.0, jobs: 1_000_000, reopen_child: None };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--dir" => args.dir = Some(PathBuf::from(iter.next().expect("--dir needs a directory"))),
            "--seconds" => args.seconds = iter.next().and_then(|s| s.parse().ok()).expect("--seconds needs a number"),
            "--jobs" => args.jobs = iter.next().and_then(|s| s.parse().ok()).expect("--jobs needs a number"),
            "--reopen-child" => args.reopen_child = Some(PathBuf::from(iter.next().expect("a directory"))),
            "--help" | "-h" => {
                eprintln!("usage: store [--dir DIR] [--seconds S] [--jobs N]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

fn print(name: &str, value: f64, unit: &str) {
    if value < 10.0 {
        println!("{name}: {value:.2} {unit}");
    } else {
        println!("{name}: {value:.0} {unit}");
    }
}

fn options() -> LocalStoreOptions {
    LocalStoreOptions { maintenance: None, ..LocalStoreOptions::default() }
}

fn queue() -> QueueName {
    QueueName::new("bench").unwrap()
}

fn job() -> NewJob {
    NewJob::new(queue(), Kind::new("noop").unwrap(), vec![0x42; 100])
}

/// Resident set size of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("statm resident pages");
    pages * rustix::param::page_size() as u64
}

/// `clients` tasks each loop: enqueue one job, lease one, complete it —
/// three durable operations per cycle, sharing group commits.
async fn cycles(dir: &Path, clients: usize, seconds: f64) -> f64 {
    let (store, _) = LocalStore::open(dir, options()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let holder = LeaseHolder::External { client: format!("client-{client}") };
                let queues = [queue()];
                while !stop.load(Ordering::Relaxed) {
                    store.enqueue(vec![job()]).await.unwrap();
                    for lease in store.lease(&queues, 1, holder.clone()).await.unwrap() {
                        store.complete(lease.job, lease.attempt, None, None).await.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    store.close().unwrap();
    rate
}

/// Enqueues `total` jobs in batches of `batch`; returns jobs per second.
async fn batched_enqueue(store: &LocalStore, total: u64, batch: u64) -> f64 {
    let start = Instant::now();
    let mut left = total;
    while left > 0 {
        let n = left.min(batch);
        store.enqueue((0..n).map(|_| job()).collect()).await.unwrap();
        left -= n;
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args = parse_args();
    if let Some(dir) = &args.reopen_child {
        // Child: open the big store in a fresh process and report the time
        // and the memory it takes.
        let baseline = resident_bytes();
        let start = Instant::now();
        let (store, report) = LocalStore::open(dir, options()).unwrap();
        let elapsed = start.elapsed();
        let resident = resident_bytes();
        println!(
            "{} {} {} {}",
            elapsed.as_secs_f64(),
            resident.saturating_sub(baseline),
            store.job_count(),
            report.records_replayed
        );
        return;
    }
    let scratch =
        args.dir.clone().unwrap_or_else(std::env::temp_dir).join(format!("corvee-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    eprintln!("store benchmark in {} ({} s per figure)", scratch.display(), args.seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    runtime.block_on(async {
        for clients in [1usize, 64] {
            let dir = scratch.join(format!("cycles-{clients}"));
            let rate = cycles(&dir, clients, args.seconds).await;
            print(&format!("store_enqueue_lease_complete_{clients}_clients"), rate, "cycles/s");
            std::fs::remove_dir_all(&dir).unwrap();
        }

        let dir = scratch.join("big");
        let (store, _) = LocalStore::open(&dir, options()).unwrap();
        let rate = batched_enqueue(&store, 200_000, 1000).await;
        print("store_batched_enqueue_1000_per_batch", rate, "jobs/s");
        let rest = args.jobs.saturating_sub(200_000);
        batched_enqueue(&store, rest, 10_000).await;
        let close_start = Instant::now();
        store.close().unwrap();
        print("store_close_with_snapshot_ms", close_start.elapsed().as_secs_f64() * 1000.0, "ms");
    });

    let output = Command::new(std::env::current_exe().unwrap())
        .arg("--reopen-child")
        .arg(scratch.join("big"))
        .output()
        .expect("run the reopen child");
    assert!(output.status.success(), "reopen child failed: {}", String::from_utf8_lossy(&output.stderr));
    let line = String::from_utf8(output.stdout).unwrap();
    let fields: Vec<f64> = line.split_whitespace().map(|f| f.parse().unwrap()).collect();
    let (seconds, resident, jobs) = (fields[0], fields[1], fields[2]);
    assert_eq!(jobs as u64, args.jobs, "the reopened store must hold every job");
    print(&format!("store_reopen_{}_queued_jobs_ms", args.jobs), seconds * 1000.0, "ms");
    print("store_resident_bytes_per_queued_job", resident / jobs, "bytes");
    print("store_resident_bytes_per_queued_job_beyond_payload", resident / jobs - 100.0, "bytes");
    std::fs::remove_dir_all(&scratch).unwrap();
}
