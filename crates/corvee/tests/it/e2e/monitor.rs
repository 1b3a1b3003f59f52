//! The monitor, end to end: an attempt running past its deadline that will
//! not stop (stuck), a job nobody takes (too old) and a spool file its
//! writer abandoned in `incoming/tmp/` (orphaned) are each reported as an
//! event, in `GET /v1/monitor`, in `corvee monitor` and in `/metrics`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use corvee::client::{CommandRequest, Event, Finding, JobRequest, JobState};

use super::daemon::{is_alive, TestDaemon};
use super::events::Events;

/// Short thresholds, so that each finding comes within a fraction of a
/// second; the command runner waits a minute before SIGTERM, so an attempt
/// that ignores SIGINT stays past its deadline, until the shutdown grace
/// kills it.
const CONFIG: &str = r#"
shutdown_grace = "500ms"

[monitor]
interval = "100ms"
stuck_after = "200ms"

[commands]
interrupt_grace = "1m"

[queues.unserved]
too_old = "100ms"
"#;

#[test]
fn stuck_too_old_and_orphaned_work_is_reported_everywhere() {
    let mut daemon = TestDaemon::start(CONFIG);
    let mut events = Events::subscribe(&daemon.client);

    // Stuck: a 100 ms deadline, and a process that ignores the SIGINT it
    // gets when the deadline passes.
    let mut stubborn = CommandRequest::new(vec!["sh".into(), "-c".into(), "trap '' INT TERM; exec sleep 60".into()]);
    stubborn.timeout_ms = Some(100);
    let stuck = daemon.client.enqueue_command(&stubborn).unwrap().id;
    // Too old: its queue has no pool.
    let waiting = daemon.client.enqueue(&JobRequest::new("echo").on_queue("unserved")).unwrap().id;
    // Orphaned: written two hours ago and never moved into new/.
    let orphan = daemon.dir().join("incoming/tmp/1795000000000.4242.abandoned.json");
    std::fs::write(&orphan, r#"{"kind": "echo"}"#).unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    std::fs::File::options().write(true).open(&orphan).and_then(|file| file.set_modified(two_hours_ago)).unwrap();
    let orphan = orphan.display().to_string();

    let mut found: BTreeMap<String, Finding> = BTreeMap::new();
    while found.len() < 3 {
        let event = events.wait_for("a monitor finding", |event| matches!(event, Event::Monitor(_)));
        let Event::Monitor(finding) = event else { unreachable!() };
        found.insert(finding.kind.clone(), finding);
    }
    let finding = &found["stuck"];
    assert_eq!((finding.job, finding.execution.as_deref()), (Some(stuck), Some(format!("{stuck}.1").as_str())));
    assert!(finding.message.contains("past its lease deadline"), "{finding:?}");
    let finding = &found["too_old"];
    assert_eq!((finding.job, finding.queue.as_deref(), finding.limit_ms), (Some(waiting), Some("unserved"), Some(100)));
    assert!(finding.age_ms.is_some_and(|age| age > 100), "{finding:?}");
    assert!(finding.message.contains("queue unserved"), "{finding:?}");
    let finding = &found["orphaned_spool_file"];
    assert_eq!(finding.path.as_deref(), Some(orphan.as_str()));
    assert!(finding.message.contains("never moved into new/"), "{finding:?}");
    assert_eq!(daemon.client.job(stuck).unwrap().state, JobState::Running, "it is stuck, not ended");

    // The same three, wherever one looks.
    let report = daemon.client.monitor().unwrap();
    let mut kinds: Vec<&str> = report.findings.iter().map(|finding| finding.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["orphaned_spool_file", "stuck", "too_old"], "{report:#?}");

    let json = daemon.corvee_ok(&["monitor", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON on stdout");
    let findings = json["findings"].as_array().expect("findings");
    let subjects: Vec<(String, serde_json::Value)> = findings
        .iter()
        .map(|finding| {
            let subject = if finding["kind"] == "orphaned_spool_file" { &finding["path"] } else { &finding["job"] };
            (finding["kind"].as_str().unwrap_or_default().to_string(), subject.clone())
        })
        .collect();
    for expected in [
        ("stuck".to_string(), stuck.into()),
        ("too_old".into(), waiting.into()),
        ("orphaned_spool_file".into(), orphan.clone().into()),
    ] {
        assert!(subjects.contains(&expected), "{expected:?} in {json}");
    }
    let table = daemon.corvee_ok(&["monitor"]);
    for kind in ["stuck", "too_old", "orphaned_spool_file"] {
        assert!(table.lines().any(|line| line.starts_with(kind)), "{kind} in\n{table}");
    }

    let metrics = daemon.client.metrics().unwrap();
    for kind in ["stuck", "too_old", "orphaned_spool_file"] {
        let line = format!("corvee_monitor_findings{{kind=\"{kind}\"}} 1");
        assert!(metrics.lines().any(|metric| metric == line), "{line} in\n{metrics}");
    }

    // A graceful stop ends even the process that ignores SIGINT and SIGTERM:
    // killed once the shutdown grace has passed.
    let pids = daemon.ledger_groups();
    assert_eq!(daemon.stop_with(rustix::process::Signal::TERM).code(), Some(0), "{}", daemon.log_text());
    assert!(daemon.log_text().contains("the shutdown grace passed: killing what still runs"), "{}", daemon.log_text());
    assert!(pids.iter().all(|pid| !is_alive(*pid)), "{pids:?} outlived the daemon");
}
