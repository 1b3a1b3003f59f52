//! A job for humans: the block `corvee show` prints, and the one-line
//! summary `corvee wait` prints when a job ends.

use std::fmt::Write as _;

use super::time_display::{absolute_and_relative, format_duration_ms};
use crate::client::{Job, JobState, Progress};

/// The label column's width in `show`'s block.
const LABEL_WIDTH: usize = 13;

/// `1/2 (50%) step 1 of 2`, `7 done`, with the message if any.
pub fn format_progress(progress: &Progress) -> String {
    let mut text = match progress.total {
        Some(total) if total > 0 => {
            let percent = progress.done.saturating_mul(100) / total;
            format!("{}/{} ({percent}%)", progress.done, total)
        }
        Some(total) => format!("{}/{}", progress.done, total),
        None => format!("{} done", progress.done),
    };
    if let Some(message) = progress.message.as_deref().filter(|message| !message.is_empty()) {
        text.push(' ');
        text.push_str(message);
    }
    text
}

/// `12 bytes`, `1 byte`.
pub fn format_bytes(bytes: u64) -> String {
    if bytes == 1 {
        "1 byte".to_string()
    } else {
        format!("{bytes} bytes")
    }
}

/// The block `corvee show` prints: every field, times absolute and
/// relative to `now_ms`, then the error history.
pub fn render_job(job: &Job, now_ms: i64) -> String {
    let mut text = String::new();
    let mut line = |label: &str, value: String| {
        let line = format!("{label:<LABEL_WIDTH$}{value}");
        let _ = writeln!(text, "{}", line.trim_end());
    };
    let time = |value: &Option<String>| match value {
        Some(time) => absolute_and_relative(time, now_ms),
        None => "-".to_string(),
    };
    let mut state = job.state.to_string();
    if job.cancel_requested && !job.state.is_finished() {
        state.push_str(" (cancel requested)");
    }
    line("job", job.id.to_string());
    line("state", state);
    line("queue", job.queue.clone());
    line("kind", job.kind.clone());
    line("priority", job.priority.to_string());
    line("attempt", format!("{} of {} ({} used)", job.attempt, job.max_attempts, job.attempts_used));
    line("execution", job.execution.clone().unwrap_or_else(|| "-".to_string()));
    line("payload", format_bytes(job.payload_bytes));
    line("checkpoint", job.checkpoint_bytes.map_or_else(|| "none".to_string(), format_bytes));
    line("result", job.result_bytes.map_or_else(|| "none".to_string(), format_bytes));
    line("progress", job.progress.as_ref().map_or_else(|| "-".to_string(), format_progress));
    line("timeout", job.timeout_ms.map_or_else(|| "-".to_string(), format_duration_ms));
    line("tags", if job.tags.is_empty() { "-".to_string() } else { job.tags.join(", ") });
    line("unique key", job.unique_key.clone().unwrap_or_else(|| "-".to_string()));
    line("created", absolute_and_relative(&job.created_at, now_ms));
    line("run at", time(&job.run_at));
    line("attempted", time(&job.attempted_at));
    line("lease until", time(&job.lease_deadline));
    line("finished", time(&job.finished_at));
    if job.errors.is_empty() {
        line("errors", "none".to_string());
    } else {
        line("errors", String::new());
        for error in &job.errors {
            let _ = writeln!(text, "  attempt {} at {}", error.attempt, absolute_and_relative(&error.at, now_ms));
            for error_line in error.error.lines() {
                let _ = writeln!(text, "    {error_line}");
            }
        }
    }
    text
}

/// One line saying how a job ended (or where it stands): what `wait`
/// prints for each job, including, for an interrupted job, how far it got
/// and whether a checkpoint was saved to resume from.
pub fn render_job_summary(job: &Job) -> String {
    let mut text = format!("job {} {}", job.id, job.state);
    let progress = job.progress.as_ref().map(format_progress);
    match job.state {
        JobState::Completed => {
            if let Some(result_bytes) = job.result_bytes {
                let _ = write!(text, ", result {}", format_bytes(result_bytes));
            }
        }
        JobState::Discarded => {
            let _ = write!(text, " after {} of {} attempts", job.attempts_used, job.max_attempts);
            if let Some(last) = job.errors.last() {
                let first_line = last.error.lines().next().unwrap_or_default();
                let _ = write!(text, ": {first_line}");
            }
        }
        JobState::Cancelled => {
            match &progress {
                Some(progress) => {
                    let _ = write!(text, " at {progress}");
                }
                None => text.push_str(" with no progress reported"),
            }
            match job.checkpoint_bytes {
                Some(bytes) => {
                    let _ = write!(
                        text,
                        "; checkpoint saved ({}): 'corvee retry {}' resumes from it",
                        format_bytes(bytes),
                        job.id
                    );
                }
                None => text.push_str("; no checkpoint saved"),
            }
        }
        JobState::Scheduled | JobState::Available | JobState::Running | JobState::Retryable => {
            if let Some(execution) = &job.execution {
                let _ = write!(text, " (execution {execution})");
            }
            if let Some(progress) = &progress {
                let _ = write!(text, " at {progress}");
            }
            if job.cancel_requested {
                text.push_str(", cancel requested");
            }
        }
    }
    text
}
