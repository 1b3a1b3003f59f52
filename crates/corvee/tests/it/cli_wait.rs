//! `corvee wait` and `run --wait` as processes against the fake daemon:
//! which requests they make in which order, what they print, their exit
//! codes, and what the first and second Ctrl-C do. (The fake daemon checks
//! the CLI's side of the conversation; the real daemon's side is for the
//! end-to-end tests.)

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::fake_daemon::{Answer, FakeDaemon};

/// How long a test waits for a step of the conversation before failing.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

fn job_json(state: &str, extra: &str) -> String {
    format!(
        r#"{{"id": 42, "queue": "default", "kind": "resize", "state": "{state}", "priority": 1024,
        "payload_bytes": 0, "created_at": "2026-11-22T10:15:30.123Z", "attempt": 1, "attempts_used": 1,
        "max_attempts": 1, "execution": "42.1", "cancel_requested": false, "tags": []{extra}}}"#
    )
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

fn sse(event: &str, data: &str) -> String {
    chunk(&format!("event: {event}\ndata: {data}\n\n"))
}

const EVENTS_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

/// An event stream whose head (and a keep-alive) go at once and whose
/// `later` part waits for `go`.
fn event_stream(later: String, go: mpsc::Receiver<()>) -> Answer {
    Answer {
        parts: vec![format!("{EVENTS_HEAD}{}", chunk(": keep-alive\n\n")).into_bytes(), later.into_bytes()],
        go: Some(go),
        sent: None,
    }
}

fn json_answer(status: &str, body: &str, sent: Option<mpsc::Sender<()>>) -> Answer {
    let mut answer = Answer::json(status, body);
    answer.sent = sent;
    answer
}

/// A running `corvee` process whose output is collected on a thread.
struct Running {
    pid: rustix::process::Pid,
    output: mpsc::Receiver<Output>,
}

fn spawn_corvee(args: &[&str], daemon: &FakeDaemon) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_corvee"))
        .args(args)
        .env("CORVEE_DIR", daemon.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start corvee");
    let pid = rustix::process::Pid::from_child(&child);
    let (sender, output) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output().expect("corvee's output"));
    });
    Running { pid, output }
}

impl Running {
    fn interrupt(&self) {
        rustix::process::kill_process(self.pid, rustix::process::Signal::INT).expect("send SIGINT");
    }

    fn finish(self) -> (Option<i32>, String, String) {
        let output = self.output.recv_timeout(STEP_TIMEOUT).expect("corvee exits");
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8 output");
        (output.status.code(), text(output.stdout), text(output.stderr))
    }
}

fn request_lines(daemon: FakeDaemon) -> Vec<String> {
    daemon.requests().into_iter().map(|request| request.request_line).collect()
}

#[test]
fn wait_subscribes_first_reads_the_job_and_exits_0_when_it_completes() {
    let (job_read, events_go) = mpsc::channel();
    let later = format!(
        "{}{}0\r\n\r\n",
        sse("progress", r#"{"id": 42, "execution": "42.1", "done": 2, "total": 2, "message": "done"}"#),
        sse("job", r#"{"id": 42, "queue": "default", "state": "completed", "execution": "42.1"}"#),
    );
    let daemon = FakeDaemon::start(vec![
        event_stream(later, events_go),
        json_answer("200 OK", &job_json("running", r#", "progress": {"done": 1, "total": 2}"#), Some(job_read)),
        json_answer("200 OK", &job_json("completed", r#", "result_bytes": 3"#), None),
    ]);
    let (code, stdout, stderr) = spawn_corvee(&["wait", "42"], &daemon).finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "job 42 completed, result 3 bytes\n");
    assert_eq!(
        request_lines(daemon),
        ["GET /v1/events?job=42 HTTP/1.1", "GET /v1/jobs/42 HTTP/1.1", "GET /v1/jobs/42 HTTP/1.1"]
    );
}

#[test]
fn wait_exits_4_when_a_job_is_discarded_and_prints_json_on_request() {
    let (job_read, events_go) = mpsc::channel();
    let later = sse("job", r#"{"id": 42, "queue": "default", "state": "discarded", "execution": "42.1"}"#);
    let discarded = job_json(
        "discarded",
        r#", "errors": [{"attempt": 1, "at": "2026-11-22T10:15:31.000Z", "error": "exit status 3"}]"#,
    );
    let daemon = FakeDaemon::start(vec![
        event_stream(later, events_go),
        json_answer("200 OK", &job_json("running", ""), Some(job_read)),
        json_answer("200 OK", &discarded, None),
    ]);
    let (code, stdout, stderr) = spawn_corvee(&["wait", "42", "--json"], &daemon).finish();
    assert_eq!(code, Some(4), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(json["jobs"][0]["state"], "discarded");
    assert_eq!(json["jobs"][0]["errors"][0]["error"], "exit status 3");
    request_lines(daemon);
}

#[test]
fn waiting_for_a_job_that_already_finished_needs_no_event() {
    let (_keep_open, events_go) = mpsc::channel::<()>();
    let daemon = FakeDaemon::start(vec![
        event_stream(String::new(), events_go),
        json_answer("200 OK", &job_json("cancelled", r#", "checkpoint_bytes": 5"#), None),
    ]);
    let (code, stdout, stderr) = spawn_corvee(&["wait", "42"], &daemon).finish();
    assert_eq!(code, Some(5), "{stderr}");
    assert_eq!(
        stdout,
        "job 42 cancelled with no progress reported; checkpoint saved (5 bytes): 'corvee retry 42' resumes from it\n"
    );
    drop(_keep_open);
    request_lines(daemon);
}

#[test]
fn the_first_ctrl_c_interrupts_the_job_and_waits_for_it_to_stop() {
    let (job_read, job_read_by_test) = mpsc::channel();
    let (cancel_answered, events_go) = mpsc::channel();
    let later = format!(
        "{}0\r\n\r\n",
        sse("job", r#"{"id": 42, "queue": "default", "state": "cancelled", "execution": "42.1"}"#)
    );
    let cancelled = job_json(
        "cancelled",
        r#", "progress": {"done": 1, "total": 2, "message": "step 1 of 2"}, "checkpoint_bytes": 12"#,
    );
    let daemon = FakeDaemon::start(vec![
        event_stream(later, events_go),
        json_answer("200 OK", &job_json("running", ""), Some(job_read)),
        json_answer("200 OK", r#"{"outcome": "cancel_requested", "execution": "42.1"}"#, Some(cancel_answered)),
        json_answer("200 OK", &cancelled, None),
    ]);
    let running = spawn_corvee(&["wait", "42"], &daemon);
    job_read_by_test.recv_timeout(STEP_TIMEOUT).expect("corvee reads the job");
    running.interrupt();
    let (code, stdout, stderr) = running.finish();
    assert_eq!(code, Some(5), "{stderr}");
    assert_eq!(
        stdout,
        "job 42 cancelled at 1/2 (50%) step 1 of 2; checkpoint saved (12 bytes): 'corvee retry 42' resumes from it\n"
    );
    assert!(stderr.contains("interrupting job 42"), "{stderr}");
    assert!(stderr.contains("execution 42.1"), "{stderr}");
    assert_eq!(
        request_lines(daemon),
        [
            "GET /v1/events?job=42 HTTP/1.1",
            "GET /v1/jobs/42 HTTP/1.1",
            "POST /v1/jobs/42/cancel HTTP/1.1",
            "GET /v1/jobs/42 HTTP/1.1"
        ]
    );
}

#[test]
fn a_second_ctrl_c_detaches_with_exit_code_130() {
    let (job_read, job_read_by_test) = mpsc::channel();
    let (cancel_answered, cancel_answered_to_test) = mpsc::channel();
    let (keep_stream_open, events_go) = mpsc::channel::<()>();
    let daemon = FakeDaemon::start(vec![
        event_stream(String::new(), events_go),
        json_answer("200 OK", &job_json("running", ""), Some(job_read)),
        json_answer("200 OK", r#"{"outcome": "cancel_requested", "execution": "42.1"}"#, Some(cancel_answered)),
    ]);
    let running = spawn_corvee(&["wait", "42"], &daemon);
    job_read_by_test.recv_timeout(STEP_TIMEOUT).expect("corvee reads the job");
    running.interrupt();
    cancel_answered_to_test.recv_timeout(STEP_TIMEOUT).expect("corvee cancels the job");
    running.interrupt();
    let (code, stdout, stderr) = running.finish();
    assert_eq!(code, Some(130), "{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("detached from job 42 running (execution 42.1)"), "{stderr}");
    drop(keep_stream_open);
    assert_eq!(request_lines(daemon).len(), 3);
}

#[test]
fn run_wait_prints_the_id_then_waits_and_exits_with_the_commands_outcome() {
    let (job_read, events_go) = mpsc::channel();
    let later = sse("job", r#"{"id": 42, "queue": "commands", "state": "completed", "execution": "42.1"}"#);
    let daemon = FakeDaemon::start(vec![
        json_answer("201 Created", r#"{"jobs": [{"id": 42, "duplicate": false}]}"#, None),
        event_stream(later, events_go),
        json_answer("200 OK", &job_json("running", ""), Some(job_read)),
        json_answer("200 OK", &job_json("completed", ""), None),
    ]);
    let (code, stdout, stderr) = spawn_corvee(&["run", "--wait", "--", "echo", "hi"], &daemon).finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "42\njob 42 completed\n");
    let requests = daemon.requests();
    assert_eq!(requests[0].request_line, "POST /v1/commands HTTP/1.1");
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).expect("JSON");
    assert_eq!(body["argv"], serde_json::json!(["echo", "hi"]));
    assert!(body.get("env").is_none(), "no environment unless --env: {body}");
    assert_eq!(requests[1].request_line, "GET /v1/events?job=42 HTTP/1.1");
}

#[test]
fn wait_times_out_with_exit_code_6() {
    let (keep_stream_open, events_go) = mpsc::channel::<()>();
    let daemon = FakeDaemon::start(vec![
        event_stream(String::new(), events_go),
        json_answer("200 OK", &job_json("running", r#", "progress": {"done": 7}"#), None),
    ]);
    let (code, stdout, stderr) = spawn_corvee(&["wait", "42", "--timeout", "200ms"], &daemon).finish();
    assert_eq!(code, Some(6), "{stderr}");
    assert_eq!(stdout, "job 42 running (execution 42.1) at 7 done\n");
    drop(keep_stream_open);
    request_lines(daemon);
}
