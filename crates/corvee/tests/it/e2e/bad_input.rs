//! Bad input, end to end: a body that is not JSON, one of the wrong shape,
//! one over the request limit, a payload over the store's limit, an invalid
//! queue name, an unknown job, an unknown route, a spool file that is not a
//! job. Each gets its documented status and stable code (docs/http-api.md)
//! with a message saying what was wrong; nothing is enqueued by them, the
//! jobs around them complete, and the daemon keeps serving.

use corvee::client::{Event, JobRequest, JobState, Payload};

use super::daemon::{raw_request, TestDaemon};
use super::events::Events;
use super::example_worker::{pool, Example};

const MAX_BODY_BYTES: usize = 4096;

/// Checks an error answer: its status, stable code and the fields naming
/// what it is about; returns the message.
fn check_error(
    answer: &super::daemon::RawResponse,
    status: u16,
    code: &str,
    fields: &[(&str, serde_json::Value)],
) -> String {
    let body = String::from_utf8_lossy(&answer.body);
    assert_eq!(answer.status, status, "{body}");
    let json: serde_json::Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|_| panic!("a {status} answer is the documented JSON: {body}"));
    let error = &json["error"];
    assert_eq!(error["code"], code, "{body}");
    for (field, value) in fields {
        assert_eq!(&error[*field], value, "{field} in {body}");
    }
    let message = error["message"].as_str().unwrap_or_else(|| panic!("a message: {body}")).to_string();
    assert!(!message.is_empty(), "{body}");
    message
}

#[test]
fn bad_input_gets_its_stable_error_code_and_nothing_is_lost() {
    let config = format!(
        "{}[http]\nlisten = \"none\"\nmax_body_bytes = {MAX_BODY_BYTES}\n[monitor]\ninterval = \"100ms\"\n",
        pool(Example::Rust, "work", &["default"], 1, &[])
    );
    let daemon = TestDaemon::start(&config);
    let mut events = Events::subscribe(&daemon.client);
    let before = daemon.client.enqueue(&JobRequest::new("echo").with_text_payload("before")).unwrap().id;

    let post = |body: &[u8]| raw_request(daemon.dir(), "POST", "/v1/jobs", body);
    let message = check_error(&post(b"{\"kind\": \"echo\", "), 400, "invalid_json", &[]);
    assert!(message.contains("not JSON"), "{message}");
    let message = check_error(&post(br#"{"kind": 7}"#), 400, "invalid_json", &[]);
    assert!(message.contains("kind"), "says which field: {message}");
    let message = check_error(&post(br#"{"kind": "echo", "colour": "blue"}"#), 400, "invalid_json", &[]);
    assert!(message.contains("colour"), "names the unknown field: {message}");
    check_error(&post(br#"{"kind": "echo", "payload": "a", "payload_base64": "YQ=="}"#), 400, "invalid_request", &[]);

    let large = serde_json::json!({"kind": "echo", "payload": "x".repeat(MAX_BODY_BYTES)}).to_string();
    check_error(&post(large.as_bytes()), 413, "body_too_large", &[("limit", MAX_BODY_BYTES.into())]);

    // A payload over the store's limit (1 GiB), as a file the daemon reads:
    // sparse, so nothing is written, and refused before it is read.
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let huge = scratch.path().join("huge");
    std::fs::File::create(&huge).and_then(|file| file.set_len((1 << 30) + 1)).expect("a sparse file");
    let request = JobRequest { payload: Payload::DaemonFile(huge.clone()), ..JobRequest::new("echo") };
    let error = daemon.client.enqueue(&request).expect_err("a payload over the limit");
    let corvee::client::ClientError::Api(error) = error else { panic!("an API error: {error:?}") };
    assert_eq!((error.status, error.code.as_str()), (413, "payload_too_large"), "{error:?}");
    assert_eq!(error.fields["limit"], 1u64 << 30, "{error:?}");
    assert!(error.message.contains(huge.to_str().unwrap()), "names the file: {error:?}");

    let answer = post(br#"{"kind": "echo", "queue": "Not A Queue!"}"#);
    let message = check_error(&answer, 400, "invalid_queue_name", &[("queue", "Not A Queue!".into())]);
    assert!(message.contains("Not A Queue!"), "{message}");
    let cli = daemon.corvee(&["add", "-q", "Not A Queue!", "-k", "echo"]);
    assert_eq!(cli.code, Some(1), "{cli:?}");
    assert!(cli.stderr.contains("Not A Queue!") && cli.stdout.is_empty(), "{cli:?}");

    let unknown = 987_654_321u64;
    let answer = raw_request(daemon.dir(), "GET", &format!("/v1/jobs/{unknown}"), b"");
    let message = check_error(&answer, 404, "job_not_found", &[("job", unknown.into())]);
    assert!(message.contains(&unknown.to_string()), "{message}");
    for args in [&["show", "987654321"][..], &["cancel", "987654321"], &["retry", "987654321"], &["logs", "987654321"]]
    {
        let cli = daemon.corvee(args);
        assert_eq!(cli.code, Some(1), "{args:?}: {cli:?}");
        assert!(cli.stderr.contains("987654321"), "{args:?} names the job: {cli:?}");
    }
    check_error(&raw_request(daemon.dir(), "GET", "/v1/nothing-here", b""), 404, "not_found", &[]);
    check_error(&raw_request(daemon.dir(), "DELETE", "/v1/jobs", b""), 405, "method_not_allowed", &[]);

    // A spool file that is not a job is set aside with the reason, and
    // reported; nothing of it is enqueued.
    let incoming = daemon.dir().join("incoming");
    std::fs::write(incoming.join("tmp/broken.json"), "this is not JSON").unwrap();
    std::fs::rename(incoming.join("tmp/broken.json"), incoming.join("new/broken.json")).unwrap();
    let refused = events.wait_for_other("the spool file refused", "spool", |data| data["file"] == "broken.json");
    assert_eq!(refused["outcome"], "refused", "{refused}");
    assert_eq!(refused["jobs"], serde_json::json!([]), "{refused}");
    assert!(!incoming.join("new/broken.json").exists());
    assert_eq!(std::fs::read_to_string(incoming.join("failed/broken.json")).unwrap(), "this is not JSON");
    let reason = std::fs::read_to_string(incoming.join("failed/broken.json.error")).expect("the .error file");
    assert!(reason.contains("not JSON"), "{reason}");
    let finding = events.wait_for("the monitor to report it", |event| {
        matches!(event, Event::Monitor(finding) if finding.path.as_deref().is_some_and(|path| path.ends_with("broken.json")))
    });
    let Event::Monitor(finding) = finding else { unreachable!() };
    assert_eq!(finding.kind, "failed_spool_file");
    assert!(finding.message.contains("not JSON"), "{finding:?}");

    // Nothing was lost and nothing was added: the job before, and one
    // after, complete; no other job exists.
    let after = daemon.client.enqueue(&JobRequest::new("echo").with_text_payload("after")).unwrap().id;
    for (id, payload) in [(before, "before"), (after, "after")] {
        assert_eq!(daemon.wait_finished(id).state, JobState::Completed);
        assert_eq!(daemon.client.result(id).unwrap(), payload.as_bytes());
    }
    let all: Vec<u64> = daemon.client.list(&Default::default()).unwrap().jobs.iter().map(|job| job.id).collect();
    assert_eq!(all, [before, after]);
    assert_eq!(daemon.client.health().unwrap().status, "ok");
}
