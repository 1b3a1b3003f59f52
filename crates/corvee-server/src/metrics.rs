//! Counters and histograms for `GET /metrics`, in the Prometheus text
//! format: jobs by queue and state, enqueue and finish counts, wait and run
//! time histograms, worker restarts, spool files, journal batches and bytes,
//! monitor findings.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use corvee_core::QueueStats;

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0];

/// A histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", count.load(Ordering::Relaxed));
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Everything the daemon counts.
#[derive(Debug, Default)]
pub struct Metrics {
    enqueued: Mutex<BTreeMap<String, u64>>,
    restarts: Mutex<BTreeMap<String, u64>>,
    /// Time from enqueue (or `run_at`) to the start of an attempt.
    pub wait: Histogram,
    /// Time an attempt ran.
    pub run: Histogram,
    /// Spool files ingested.
    pub spool_ingested: AtomicU64,
    /// Spool files refused (moved to `failed/`).
    pub spool_failed: AtomicU64,
    /// Store events the daemon's router missed in bursts (its buffer
    /// overflowed; what it must act on is found from the state instead).
    pub store_events_missed: AtomicU64,
}

/// Adds `by` to the count under `key`, allocating the key only the first
/// time (this runs for every job).
fn bump<V: Default>(map: &Mutex<BTreeMap<String, V>>, key: &str, add: impl FnOnce(&mut V)) {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match map.get_mut(key) {
        Some(value) => add(value),
        None => add(map.entry(key.to_owned()).or_default()),
    }
}

/// Escapes a label value.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Jobs enqueued into a queue.
    pub fn enqueued(&self, queue: &str, count: u64) {
        bump(&self.enqueued, queue, |total| *total += count);
    }

    /// A worker of a pool was restarted.
    pub fn restarted(&self, pool: &str) {
        bump(&self.restarts, pool, |total| *total += 1);
    }

    /// The whole exposition.
    pub fn render(
        &self,
        stats: &[QueueStats],
        journal: corvee_journal::JournalStats,
        findings: &BTreeMap<&'static str, u64>,
        connections: [(&str, usize); 2],
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP corvee_http_connections Client connections open, by listener (limit: http.max_connections \
             each).\n# TYPE corvee_http_connections gauge"
        );
        for (listener, open) in connections {
            let _ = writeln!(out, "corvee_http_connections{{listener=\"{listener}\"}} {open}");
        }
        let _ = writeln!(out, "# HELP corvee_jobs Jobs by queue and state.\n# TYPE corvee_jobs gauge");
        for queue in stats {
            for (state, count) in [
                ("scheduled", queue.scheduled),
                ("available", queue.available),
                ("running", queue.running),
                ("retryable", queue.retryable),
                ("completed", queue.completed),
                ("cancelled", queue.cancelled),
                ("discarded", queue.discarded),
            ] {
                let _ = writeln!(out, "corvee_jobs{{queue=\"{}\",state=\"{state}\"}} {count}", label(&queue.queue));
            }
        }
        let _ = writeln!(
            out,
            "# HELP corvee_queue_finished_bytes Bytes of payloads, results and checkpoints the finished jobs hold \
             in memory.\n# TYPE corvee_queue_finished_bytes gauge"
        );
        for queue in stats {
            let _ = writeln!(
                out,
                "corvee_queue_finished_bytes{{queue=\"{}\"}} {}",
                label(&queue.queue),
                queue.finished_bytes
            );
        }
        let _ =
            writeln!(out, "# HELP corvee_queue_paused Whether a queue is paused.\n# TYPE corvee_queue_paused gauge");
        for queue in stats {
            let _ =
                writeln!(out, "corvee_queue_paused{{queue=\"{}\"}} {}", label(&queue.queue), u8::from(queue.paused));
        }
        let _ = writeln!(
            out,
            "# HELP corvee_jobs_enqueued_total Jobs enqueued.\n# TYPE corvee_jobs_enqueued_total counter"
        );
        for (queue, count) in self.enqueued.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "corvee_jobs_enqueued_total{{queue=\"{}\"}} {count}", label(queue));
        }
        let _ = writeln!(
            out,
            "# HELP corvee_jobs_finished_total Jobs that reached a final state.\n# TYPE corvee_jobs_finished_total counter"
        );
        for queue in stats {
            for (state, count) in ["completed", "cancelled", "discarded"].into_iter().zip(queue.finished_since_open) {
                let queue = label(&queue.queue);
                let _ = writeln!(out, "corvee_jobs_finished_total{{queue=\"{queue}\",state=\"{state}\"}} {count}");
            }
        }
        self.wait.render(&mut out, "corvee_job_wait_seconds", "Time from a job being due to its attempt starting.");
        self.run.render(&mut out, "corvee_job_run_seconds", "Time an attempt ran.");
        let _ = writeln!(
            out,
            "# HELP corvee_worker_restarts_total Worker processes restarted.\n# TYPE corvee_worker_restarts_total counter"
        );
        for (pool, count) in self.restarts.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "corvee_worker_restarts_total{{pool=\"{}\"}} {count}", label(pool));
        }
        let _ = writeln!(
            out,
            "# HELP corvee_spool_files_total Spool files by outcome.\n# TYPE corvee_spool_files_total counter\n\
             corvee_spool_files_total{{outcome=\"ingested\"}} {}\ncorvee_spool_files_total{{outcome=\"failed\"}} {}",
            self.spool_ingested.load(Ordering::Relaxed),
            self.spool_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP corvee_store_events_missed_total Store events the daemon fell behind on (cancels and lease \
             expiries among them are recovered from the state).\n\
             # TYPE corvee_store_events_missed_total counter\ncorvee_store_events_missed_total {}",
            self.store_events_missed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP corvee_journal_batches_total Group-commit batches written (one fdatasync each).\n\
             # TYPE corvee_journal_batches_total counter\ncorvee_journal_batches_total {}\n\
             # HELP corvee_journal_bytes_total Bytes written to the journal.\n\
             # TYPE corvee_journal_bytes_total counter\ncorvee_journal_bytes_total {}",
            journal.batches_written, journal.bytes_written
        );
        let _ = writeln!(
            out,
            "# HELP corvee_monitor_findings Current monitor findings.\n# TYPE corvee_monitor_findings gauge"
        );
        for kind in ["too_old", "stuck", "orphaned_spool_file", "failed_spool_file", "crash_looping", "poison"] {
            let _ = writeln!(
                out,
                "corvee_monitor_findings{{kind=\"{kind}\"}} {}",
                findings.get(kind).copied().unwrap_or(0)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(200));
        histogram.observe(Duration::from_millis(20));
        let mut out = String::new();
        histogram.render(&mut out, "x", "test");
        assert!(out.contains("x_bucket{le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.025\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2\nx_sum 0.0202\nx_count 2\n"), "{out}");
    }
}
