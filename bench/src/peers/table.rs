//! The comparison table: reads the `system_figure: value unit` lines that
//! the measurement runs printed and lays them out with one row per figure
//! and one column per system.

use std::fmt::Write;

/// Systems in column order, and figures in row order with their labels.
pub const SYSTEMS: [&str; 5] = ["corvee", "beanstalkd", "redis", "postgres", "tsp"];
pub const FIGURES: [(&str, &str); 11] = [
    ("enqueue_1_producer", "durable enqueue, 1 producer"),
    ("enqueue_4_producers", "durable enqueue, 4 producers"),
    ("enqueue_1_producer_64_in_flight", "durable enqueue, 1 producer, 64 pipelined"),
    ("enqueue_64_producers", "durable enqueue, 64 producers"),
    ("enqueue_1_producer_batches_of_64", "durable enqueue, 1 producer, batches of 64"),
    ("end_to_end_4_workers", "end to end, 4 producers, 4 workers"),
    ("latency_p50", "enqueue→start p50 at 1,000/s"),
    ("latency_p99", "enqueue→start p99 at 1,000/s"),
    ("latency_rate", "rate the latency producer achieved"),
    ("payload_64kib_end_to_end", "64-KiB payloads end to end"),
    ("command_jobs_true", "`true` command jobs"),
];

/// A markdown table of the figures found in `lines`; `n/a` where a system
/// has no such figure.
pub fn render(lines: &str) -> String {
    let lookup = |system: &str, figure: &str| -> Option<(String, String)> {
        let prefix = format!("{system}_{figure}: ");
        let line = lines.lines().find_map(|line| line.strip_prefix(prefix.as_str()))?;
        let (value, unit) = line.split_once(' ')?;
        Some((value.to_owned(), unit.to_owned()))
    };
    let mut table = String::from("| figure |");
    for system in SYSTEMS {
        let _ = write!(table, " {system} |");
    }
    table.push_str(" unit |\n|---|");
    table.push_str(&"---:|".repeat(SYSTEMS.len()));
    table.push_str("---|\n");
    for (figure, label) in FIGURES {
        let mut unit = String::new();
        let _ = write!(table, "| {label} |");
        for system in SYSTEMS {
            match lookup(system, figure) {
                Some((value, found_unit)) => {
                    unit = found_unit;
                    let _ = write!(table, " {} |", group_digits(&value));
                }
                None => table.push_str(" n/a |"),
            }
        }
        let _ = writeln!(table, " {unit} |");
    }
    table
}

/// `1234567` → `1,234,567`.
fn group_digits(value: &str) -> String {
    if !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return value.to_owned();
    }
    let mut grouped = String::new();
    for (index, digit) in value.chars().enumerate() {
        if index > 0 && (value.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}
