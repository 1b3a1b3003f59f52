//! The spool writer: a file lands in `incoming/new/` holding exactly the
//! documented JSON, nothing stays in `incoming/tmp/`, folders are 0700.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use corvee::client::{JobRequest, Payload, Unique};
use corvee::spool::{self, SpoolError};

fn files_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .expect("a folder")
        .map(|entry| entry.expect("an entry").file_name().into_string().expect("a UTF-8 name"))
        .collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn a_job_lands_in_new_with_the_documented_json_and_nothing_stays_in_tmp() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data_dir = dir.path().join("never-used"); // created on the way, 0700
    let mut request = JobRequest::new("resize").on_queue("images").with_text_payload("a.png");
    request.priority = Some(10);
    request.unique = Some(Unique { key: "invoice:7".to_string(), window_ms: Some(3_600_000) });
    let written = spool::write_job(&data_dir, &request).expect("written");

    assert_eq!(files_in(&spool::new_dir(&data_dir)), vec![written.name.clone()]);
    assert_eq!(files_in(&spool::tmp_dir(&data_dir)), Vec::<String>::new());
    assert_eq!(written.path, spool::new_dir(&data_dir).join(&written.name));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&written.path).expect("readable")).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!({"queue": "images", "kind": "resize", "payload": "a.png", "priority": 10,
            "unique": {"key": "invoice:7", "window_ms": 3_600_000}})
    );
    for folder in [data_dir.clone(), data_dir.join("incoming"), spool::new_dir(&data_dir), spool::tmp_dir(&data_dir)] {
        assert_eq!(mode(&folder), 0o700, "{}", folder.display());
    }
    assert_eq!(mode(&written.path), 0o600);
}

#[test]
fn the_name_is_unix_ms_pid_random_hex_json_and_never_repeats() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let names: Vec<String> =
        (0..50).map(|_| spool::write_job(dir.path(), &JobRequest::new("k")).expect("written").name).collect();
    for name in &names {
        let parts: Vec<&str> = name.split('.').collect();
        assert_eq!(parts.len(), 4, "{name}");
        assert!(parts[0].parse::<u64>().is_ok(), "{name}");
        assert_eq!(parts[1], std::process::id().to_string(), "{name}");
        assert!(parts[2].len() == 16 && parts[2].chars().all(|c| c.is_ascii_hexdigit()), "{name}");
        assert_eq!(parts[3], "json");
        assert!(!name.starts_with('.'));
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len());
    assert_eq!(files_in(&spool::new_dir(dir.path())).len(), 50);
}

#[test]
fn a_batch_is_one_file_holding_every_job() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let requests = [JobRequest::new("a").with_payload_bytes(vec![0xff, 0x00]), JobRequest::new("b")];
    let written = spool::write_batch(dir.path(), &requests).expect("written");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&written.path).expect("readable")).expect("JSON");
    assert_eq!(json, serde_json::json!({"jobs": [{"kind": "a", "payload_base64": "/wA="}, {"kind": "b"}]}));
    assert!(matches!(spool::write_batch(dir.path(), &[]), Err(SpoolError::EmptyBatch)));
}

#[test]
fn a_file_over_the_limit_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let request = JobRequest::new("big").with_text_payload("x".repeat(spool::MAX_SPOOL_FILE_BYTES));
    let error = spool::write_job(dir.path(), &request).expect_err("too large");
    assert!(matches!(error, SpoolError::TooLarge { .. }), "{error:?}");
    assert!(!spool::new_dir(dir.path()).exists() || files_in(&spool::new_dir(dir.path())).is_empty());
}

#[test]
fn a_daemon_file_payload_is_passed_as_a_path() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut request = JobRequest::new("import");
    request.payload = Payload::DaemonFile("/data/rows.csv".into());
    let written = spool::write_job(dir.path(), &request).expect("written");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&written.path).expect("readable")).expect("JSON");
    assert_eq!(json, serde_json::json!({"kind": "import", "payload_file": "/data/rows.csv"}));
}

#[test]
fn a_job_the_daemon_would_refuse_is_refused_here_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let check = |request: JobRequest| {
        let error = spool::write_job(dir.path(), &request).expect_err("invalid");
        assert!(matches!(error, SpoolError::InvalidJob { .. }), "{error:?}");
        error.to_string()
    };
    let message = check(JobRequest::new("k").on_queue("Bad Queue!"));
    assert!(message.contains("Bad Queue!"), "{message}");
    check(JobRequest::new("has space"));
    let mut both = JobRequest::new("k");
    both.delay_ms = Some(1);
    both.run_at = Some("2026-11-22T11:00:00Z".to_string());
    check(both);
    let error = spool::write_batch(dir.path(), &[JobRequest::new("k"), JobRequest::new("")]).expect_err("invalid");
    assert!(error.to_string().contains("job 1 of the batch"), "{error}");
    assert!(!spool::new_dir(dir.path()).exists());
}
