//! What the CLI prints for humans, as snapshots from fixed JSON (times
//! relative to a fixed now), and the exit codes it chooses.

use corvee::cli::exit_code::{self, WaitOutcome};
use corvee::cli::{
    format_duration_ms, parse_rfc3339_ms, render_findings, render_job, render_job_summary, render_job_table,
    render_queue_table,
};
use corvee::client::{Finding, Job, QueueStats};
use expect_test::expect;

/// "Now" for every snapshot: five minutes after the fixture job was created.
fn now() -> i64 {
    parse_rfc3339_ms("2026-11-22T10:20:30.123Z").expect("a valid time")
}

fn job(changes: serde_json::Value) -> Job {
    let mut json = serde_json::json!({
        "id": 42, "queue": "default", "kind": "resize", "state": "running", "priority": 1024, "payload_bytes": 18,
        "created_at": "2026-11-22T10:15:30.123Z", "run_at": null, "attempted_at": "2026-11-22T10:15:30.200Z",
        "finished_at": null, "attempt": 1, "attempts_used": 1, "max_attempts": 25, "timeout_ms": 1800000,
        "execution": "42.1", "lease_deadline": "2026-11-22T10:45:30.200Z", "cancel_requested": false,
        "tags": ["batch-7"], "unique_key": null, "progress": {"done": 1, "total": 2, "message": "step 1 of 2"},
        "checkpoint_bytes": 12, "result_bytes": null, "errors": []
    });
    for (key, value) in changes.as_object().expect("an object") {
        json[key] = value.clone();
    }
    serde_json::from_value(json).expect("a job")
}

#[test]
fn show_prints_every_field_with_absolute_and_relative_times_and_the_error_history() {
    let job = job(serde_json::json!({
        "attempt": 2, "attempts_used": 2, "execution": "42.2", "cancel_requested": true,
        "errors": [{"attempt": 1, "at": "2026-11-22T10:16:00.000Z", "error": "disk full\nwhile writing a.jpg"}]
    }));
    expect![[r#"
        job          42
        state        running (cancel requested)
        queue        default
        kind         resize
        priority     1024
        attempt      2 of 25 (2 used)
        execution    42.2
        payload      18 bytes
        checkpoint   12 bytes
        result       none
        progress     1/2 (50%) step 1 of 2
        timeout      30m
        tags         batch-7
        unique key   -
        created      2026-11-22T10:15:30.123Z (5m ago)
        run at       -
        attempted    2026-11-22T10:15:30.200Z (4m 59s ago)
        lease until  2026-11-22T10:45:30.200Z (in 25m)
        finished     -
        errors
          attempt 1 at 2026-11-22T10:16:00.000Z (4m 30s ago)
            disk full
            while writing a.jpg
    "#]]
    .assert_eq(&render_job(&job, now()));
}

#[test]
fn ls_prints_an_aligned_table() {
    let jobs = [
        job(serde_json::json!({})),
        job(serde_json::json!({"id": 1043, "queue": "images", "kind": "thumbnail", "state": "completed",
            "progress": null, "created_at": "2026-11-20T08:00:00.000Z", "max_attempts": 3})),
        job(serde_json::json!({"id": 7, "state": "available", "attempts_used": 0, "progress": {"done": 17},
            "cancel_requested": true, "created_at": "2026-11-22T10:20:30.000Z"})),
    ];
    expect![[r#"
          ID  QUEUE    KIND       STATE       ATTEMPTS  PROGRESS               CREATED
          42  default  resize     running         1/25  1/2 (50%) step 1 of 2  5m ago
        1043  images   thumbnail  completed        1/3  -                      2d 2h ago
           7  default  resize     available*      0/25  17 done                now
    "#]]
    .assert_eq(&render_job_table(&jobs, now()));
}

#[test]
fn stats_prints_a_row_per_queue() {
    let queues: Vec<QueueStats> = serde_json::from_value(serde_json::json!([
        {"queue": "default", "paused": false, "scheduled": 0, "available": 3, "running": 1, "retryable": 0,
         "completed": 10, "cancelled": 0, "discarded": 1},
        {"queue": "images", "paused": true, "scheduled": 12, "available": 10400, "running": 0, "retryable": 2,
         "completed": 0, "cancelled": 5, "discarded": 0}
    ]))
    .expect("queues");
    expect![[r#"
        QUEUE    STATUS  SCHEDULED  AVAILABLE  RUNNING  RETRYABLE  COMPLETED  CANCELLED  DISCARDED
        default  active          0          3        1          0         10          0          1
        images   paused         12      10400        0          2          0          5          0
    "#]]
    .assert_eq(&render_queue_table(&queues));
}

#[test]
fn monitor_prints_what_each_finding_is_about() {
    let findings: Vec<Finding> = serde_json::from_value(serde_json::json!([
        {"kind": "too_old", "queue": "default", "job": 7, "age_ms": 900000, "limit_ms": 600000,
         "message": "job 7 has waited 15m in queue default (limit 10m)"},
        {"kind": "stuck", "job": 9, "execution": "9.2", "message": "attempt 9.2 is past its lease"},
        {"kind": "orphaned_spool_file", "path": "/d/incoming/tmp/1.2.ab.json", "message": "left in tmp for 2h"},
        {"kind": "crash_looping", "pool": "images", "message": "5 crashes in 1m"}
    ]))
    .expect("findings");
    expect![[r#"
        KIND                 SUBJECT                      MESSAGE
        too_old              job 7                        job 7 has waited 15m in queue default (limit 10m)
        stuck                execution 9.2                attempt 9.2 is past its lease
        orphaned_spool_file  /d/incoming/tmp/1.2.ab.json  left in tmp for 2h
        crash_looping        pool images                  5 crashes in 1m
    "#]]
    .assert_eq(&render_findings(&findings));
}

#[test]
fn wait_summarizes_how_each_job_ended() {
    let summaries = [
        job(serde_json::json!({"state": "completed", "result_bytes": 3})),
        job(serde_json::json!({"state": "cancelled"})),
        job(serde_json::json!({"state": "cancelled", "checkpoint_bytes": null, "progress": null})),
        job(serde_json::json!({"state": "discarded", "attempts_used": 25,
            "errors": [{"attempt": 25, "at": "2026-11-22T10:16:00.000Z", "error": "exit status 3\nmore"}]})),
        job(serde_json::json!({"cancel_requested": true})),
    ]
    .iter()
    .map(render_job_summary)
    .collect::<Vec<_>>()
    .join("\n");
    expect![[r#"
        job 42 completed, result 3 bytes
        job 42 cancelled at 1/2 (50%) step 1 of 2; checkpoint saved (12 bytes): 'corvee retry 42' resumes from it
        job 42 cancelled with no progress reported; no checkpoint saved
        job 42 discarded after 25 of 25 attempts: exit status 3
        job 42 running (execution 42.1) at 1/2 (50%) step 1 of 2, cancel requested"#]]
    .assert_eq(&summaries);
}

#[test]
fn times_are_read_from_rfc3339() {
    let check = |text: &str, expected: Option<i64>| assert_eq!(parse_rfc3339_ms(text), expected, "{text}");
    check("1970-01-01T00:00:00Z", Some(0));
    check("1970-01-01T00:00:01.5Z", Some(1_500));
    check("2000-02-29T12:00:00.123456Z", Some(951_825_600_123));
    check("2026-11-22T10:15:30.123+01:00", Some(1_795_342_530_123 - 3_600_000));
    check("2026-11-22 10:15:30Z", Some(1_795_342_530_000));
    check("2026-11-22T10:15:30", None);
    check("2026-13-22T10:15:30Z", None);
    check("yesterday", None);
}

#[test]
fn durations_are_shown_in_their_two_largest_units() {
    let shown: Vec<String> = [0, 850, 12_000, 303_000, 3_600_000, 7_500_000, 86_400_000 * 3 + 3_600_000 * 4]
        .map(format_duration_ms)
        .to_vec();
    assert_eq!(shown, ["0ms", "850ms", "12s", "5m 3s", "1h", "2h 5m", "3d 4h"]);
}

#[test]
fn the_worst_outcome_of_a_wait_decides_its_exit_code() {
    use WaitOutcome::*;
    let check = |outcomes: &[WaitOutcome], code: u8| {
        assert_eq!(exit_code::for_wait(outcomes.iter().copied()), code, "{outcomes:?}")
    };
    check(&[Completed, Completed], exit_code::SUCCESS);
    check(&[Completed, TimedOut], exit_code::WAIT_TIMED_OUT);
    check(&[TimedOut, Cancelled], exit_code::JOB_CANCELLED);
    check(&[Cancelled, Failed, Completed], exit_code::JOB_FAILED);
    check(&[Deleted, Cancelled], exit_code::ERROR);
}
