//! The comparison table: reads the `system_figure: value unit` lines that
//! the measurement runs printed and lays them out with one row per figure
//! and one column per system. When a figure was measured in several rounds
//! the cell is the median, with the lowest and highest in parentheses.

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
    let lookup = |system: &str, figure: &str| -> Option<(Vec<f64>, String)> {
        let prefix = format!("{system}_{figure}: ");
        let mut values = Vec::new();
        let mut unit = String::new();
        for line in lines.lines().filter_map(|line| line.strip_prefix(prefix.as_str())) {
            let (value, found_unit) = line.split_once(' ')?;
            values.push(value.parse::<f64>().ok()?);
            unit = found_unit.to_owned();
        }
        (!values.is_empty()).then_some((values, unit))
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
                Some((mut values, found_unit)) => {
                    unit = found_unit;
                    values.sort_by(f64::total_cmp);
                    let median = values[values.len() / 2];
                    let _ = write!(table, " {}", group_digits(median));
                    if values.len() > 1 {
                        let (low, high) = (values[0], values[values.len() - 1]);
                        let _ = write!(table, " ({}–{})", group_digits(low), group_digits(high));
                    }
                    table.push_str(" |");
                }
                None => table.push_str(" n/a |"),
            }
        }
        let _ = writeln!(table, " {unit} |");
    }
    table.push('\n');
    let mut probe = |system: &str, figure: &str, sentence: &str| {
        if let Some((mut values, unit)) = lookup(system, figure) {
            values.sort_by(f64::total_cmp);
            let _ = writeln!(
                table,
                "{sentence}: {} {unit} (median of {} probes, {}–{}).",
                group_digits(values[values.len() / 2]),
                values.len(),
                group_digits(values[0]),
                group_digits(values[values.len() - 1]),
            );
        }
    };
    probe("disk", "fdatasync_4k", "The disk meanwhile, 4-KiB writes each followed by fdatasync");
    probe("cpu", "thread_round_trip", "A request and its reply between two threads over a Unix socket");
    for (grouping, how) in [
        ("serial", "one thread, every ready request in the next fdatasync"),
        ("regroup", "waiting up to 100 µs for all four before each fdatasync"),
        ("overlapped", "two threads, two fdatasyncs in flight"),
    ] {
        let sentence = format!("The ideal server (ceiling.rs), 4 closed-loop producers, {how}");
        probe("ceiling", &format!("closed_loop_4_clients_{grouping}"), &sentence);
    }
    table
}

/// `1234567.4` → `1,234,567`.
fn group_digits(value: f64) -> String {
    let digits = format!("{value:.0}");
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}
