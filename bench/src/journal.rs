//! The journal benchmark: the raw limits of this disk (measured by the same
//! program, on the same directory) next to corvee-journal's durable append
//! rate with 1 to 64 concurrent appenders, for 100-byte and 4-KiB records.
//!
//! Run: `cargo run --release -p bench --bin journal [-- --dir DIR --seconds S]`
//! Every figure is printed on its own line as `name: value unit`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corvee_journal::{Journal, JournalOptions};

struct Args {
    dir: Option<PathBuf>,
    seconds: f64,
}

fn parse_args() -> Args {
    let mut args = Args { dir: None, seconds: 2.0 };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--dir" => args.dir = Some(PathBuf::from(iter.next().expect("--dir needs a directory"))),
            "--seconds" => args.seconds = iter.next().and_then(|s| s.parse().ok()).expect("--seconds needs a number"),
            "--help" | "-h" => {
                eprintln!("usage: journal [--dir DIR] [--seconds S]  (DIR defaults to a temporary directory)");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

fn print(name: &str, value: f64, unit: &str) {
    println!("{name}: {value:.0} {unit}");
}

/// Runs `step` repeatedly for about `seconds`; returns steps per second.
fn rate(seconds: f64, mut step: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        step(done);
        done += 1;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn create(path: &Path) -> File {
    let _ = std::fs::remove_file(path);
    OpenOptions::new().read(true).write(true).create_new(true).open(path).expect("create a scratch file")
}

/// One 4-KiB write plus one fdatasync per record, appending to a growing
/// file: what a naive log does.
fn raw_append(dir: &Path, seconds: f64) -> f64 {
    let file = create(&dir.join("raw-append"));
    let record = vec![0x5a; 4096];
    let per_second = rate(seconds, |i| {
        file.write_all_at(&record, i * 4096).unwrap();
        file.sync_data().unwrap();
    });
    std::fs::remove_file(dir.join("raw-append")).unwrap();
    per_second
}

/// A file zero-filled (and fsync'd) in advance, so writes overwrite
/// allocated blocks.
fn preallocated(dir: &Path, name: &str, bytes: u64) -> File {
    let file = create(&dir.join(name));
    let zeros = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < bytes {
        file.write_all_at(&zeros, offset).unwrap();
        offset += zeros.len() as u64;
    }
    file.sync_all().unwrap();
    file
}

/// One 4-KiB write plus one fdatasync per record, into preallocated space.
fn raw_preallocated(dir: &Path, seconds: f64, records_per_sync: u64) -> f64 {
    let capacity = 1u64 << 30;
    let file = preallocated(dir, "raw-prealloc", capacity);
    let batch = vec![0x5a; 4096 * records_per_sync as usize];
    let per_second = rate(seconds, |i| {
        let offset = (i * batch.len() as u64) % (capacity - batch.len() as u64);
        file.write_all_at(&batch, offset).unwrap();
        file.sync_data().unwrap();
    });
    std::fs::remove_file(dir.join("raw-prealloc")).unwrap();
    per_second * records_per_sync as f64
}

/// Durable appends per second with `appenders` threads, each appending a
/// record and waiting for its ticket, in a loop.
fn journal_rate(dir: &Path, seconds: f64, record_bytes: usize, appenders: usize) -> f64 {
    let path = dir.join(format!("journal-{record_bytes}-{appenders}"));
    let _ = std::fs::remove_dir_all(&path);
    let (journal, _) = Journal::open(&path, JournalOptions::default()).expect("open the journal");
    let journal = Arc::new(journal);
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    // Warm up: the first segment is created and the page cache touched.
    for _ in 0..100 {
        journal.append(&vec![1u8; record_bytes]).unwrap().wait().unwrap();
    }
    let start = Instant::now();
    let threads: Vec<_> = (0..appenders)
        .map(|_| {
            let (journal, stop, total) = (Arc::clone(&journal), Arc::clone(&stop), Arc::clone(&total));
            std::thread::spawn(move || {
                let record = vec![0xa5u8; record_bytes];
                let mut done = 0;
                while !stop.load(Ordering::Relaxed) {
                    journal.append(&record).unwrap().wait().unwrap();
                    done += 1;
                }
                total.fetch_add(done, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let per_second = total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    Arc::try_unwrap(journal).expect("appenders are done").close().unwrap();
    std::fs::remove_dir_all(&path).unwrap();
    per_second
}

fn main() {
    let args = parse_args();
    let scratch = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).unwrap();
            tempfile_in(dir)
        }
        None => tempfile_in(&std::env::temp_dir()),
    };
    let dir = scratch.as_path();
    eprintln!("journal benchmark in {} ({} s per figure)", dir.display(), args.seconds);

    let append = raw_append(dir, args.seconds);
    print("raw_append_4k_fdatasync_each", append, "records/s");
    let prealloc = raw_preallocated(dir, args.seconds, 1);
    print("raw_preallocated_4k_fdatasync_each", prealloc, "records/s");
    print("raw_preallocated_4k_64_per_fdatasync", raw_preallocated(dir, args.seconds, 64), "records/s");

    for record_bytes in [100usize, 4096] {
        for appenders in [1usize, 4, 16, 64] {
            let per_second = journal_rate(dir, args.seconds, record_bytes, appenders);
            let name = format!("journal_{record_bytes}b_{appenders}_appenders");
            print(&name, per_second, "appends/s");
            print(&format!("{name}_mb"), per_second * record_bytes as f64 / 1e6, "MB/s");
        }
    }
    // The disk's fdatasync rate drifts between runs; compare one appender
    // with the raw rate in interleaved runs and report the median ratio.
    let mut ratios: Vec<f64> = (0..5)
        .map(|_| {
            let raw = raw_preallocated(dir, args.seconds / 2.0, 1);
            let journal = journal_rate(dir, args.seconds / 2.0, 4096, 1);
            100.0 * journal / raw
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    print("journal_4k_1_appender_vs_raw_preallocated_median", ratios[2], "%");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A fresh scratch directory inside `parent`.
fn tempfile_in(parent: &Path) -> PathBuf {
    let dir = parent.join(format!("corvee-journal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
