//! The client's HTTP/1.1 handling against the fake daemon: request lines
//! and bodies, Content-Length and chunked answers, streaming, errors, and
//! "no daemon is running".

use std::io::Read;
use std::sync::mpsc;

use corvee::client::{Client, ClientError, Event, JobPage, JobRequest, JobState, ListFilter, ProgressEvent, Unique};

use crate::fake_daemon::{Answer, FakeDaemon};

const JOB_JSON: &str = r#"{"id": 42, "queue": "default", "kind": "resize", "state": "running", "priority": 1024,
  "payload_bytes": 18, "created_at": "2026-11-22T10:15:30.123Z", "run_at": null,
  "attempted_at": "2026-11-22T10:15:30.200Z", "finished_at": null, "attempt": 1, "attempts_used": 1,
  "max_attempts": 25, "timeout_ms": 1800000, "execution": "42.1", "lease_deadline": "2026-11-22T10:45:30.200Z",
  "cancel_requested": false, "tags": ["batch-7"], "unique_key": null,
  "progress": {"done": 1, "total": 2, "message": "step 1 of 2"}, "checkpoint_bytes": 12, "result_bytes": null,
  "errors": [{"attempt": 1, "at": "2026-11-22T10:15:31.000Z", "error": "boom"}], "added_later": {"x": 1}}"#;

/// A chunked answer head.
const CHUNKED_HEAD: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

#[test]
fn get_job_sends_a_plain_request_and_reads_a_content_length_answer() {
    let daemon = FakeDaemon::start(vec![Answer::json("200 OK", JOB_JSON)]);
    let job = daemon.client().job(42).expect("the job");
    assert_eq!(job.id, 42);
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.execution.as_deref(), Some("42.1"));
    assert_eq!(job.progress.as_ref().map(|progress| progress.total), Some(Some(2)));
    assert_eq!(job.errors[0].error, "boom");
    // A field this client does not know is kept, so --json shows it.
    assert_eq!(job.other["added_later"], serde_json::json!({"x": 1}));
    let requests = daemon.requests();
    assert_eq!(requests[0].request_line, "GET /v1/jobs/42 HTTP/1.1");
    assert_eq!(requests[0].header("connection").as_deref(), Some("close"));
    assert_eq!(requests[0].header("host").as_deref(), Some("localhost"));
    assert_eq!(requests[0].header("authorization"), None);
    assert!(requests[0].body.is_empty());
}

#[test]
fn a_job_serializes_back_to_every_field_the_daemon_sent() {
    let daemon = FakeDaemon::start(vec![Answer::json("200 OK", JOB_JSON)]);
    let job = daemon.client().job(42).expect("the job");
    let original: serde_json::Value = serde_json::from_str(JOB_JSON).expect("valid JSON");
    assert_eq!(serde_json::to_value(&job).expect("serializable"), original);
}

#[test]
fn enqueue_posts_the_documented_json_and_reads_the_id() {
    let daemon = FakeDaemon::start(vec![Answer::json("201 Created", r#"{"jobs": [{"id": 7, "duplicate": true}]}"#)]);
    let mut request = JobRequest::new("resize").on_queue("images").with_payload_bytes(vec![0xff, 0, 1]);
    request.delay_ms = Some(5000);
    request.unique = Some(Unique { key: "invoice:7".to_string(), window_ms: None });
    request.tags = vec!["batch-7".to_string()];
    let enqueued = daemon.client().enqueue(&request).expect("enqueued");
    assert_eq!((enqueued.id, enqueued.duplicate), (7, true));
    let requests = daemon.requests();
    assert_eq!(requests[0].request_line, "POST /v1/jobs HTTP/1.1");
    assert_eq!(requests[0].header("content-type").as_deref(), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).expect("a JSON body");
    assert_eq!(
        body,
        serde_json::json!({"queue": "images", "kind": "resize", "payload_base64": "/wAB", "delay_ms": 5000,
            "unique": {"key": "invoice:7"}, "tags": ["batch-7"]})
    );
}

#[test]
fn enqueue_batch_wraps_the_jobs_and_keeps_their_order() {
    let answer = r#"{"jobs": [{"id": 1, "duplicate": false}, {"id": 2, "duplicate": false}]}"#;
    let daemon = FakeDaemon::start(vec![Answer::json("201 Created", answer)]);
    let requests = [JobRequest::new("a"), JobRequest::new("b").with_text_payload("text")];
    let enqueued = daemon.client().enqueue_batch(&requests).expect("enqueued");
    assert_eq!(enqueued.iter().map(|job| job.id).collect::<Vec<_>>(), [1, 2]);
    let body: serde_json::Value = serde_json::from_slice(&daemon.requests()[0].body).expect("a JSON body");
    assert_eq!(body, serde_json::json!({"jobs": [{"kind": "a"}, {"kind": "b", "payload": "text"}]}));
}

#[test]
fn list_encodes_its_filter_in_the_query_string() {
    let daemon = FakeDaemon::start(vec![Answer::json("200 OK", r#"{"jobs": [], "next_after": null}"#)]);
    let filter = ListFilter {
        queue: Some("a b/c".to_string()),
        state: Some(JobState::Retryable),
        kind: None,
        after: Some(57),
        limit: Some(10),
    };
    let page: JobPage = daemon.client().list(&filter).expect("a page");
    assert!(page.jobs.is_empty() && page.next_after.is_none());
    assert_eq!(
        daemon.requests()[0].request_line,
        "GET /v1/jobs?queue=a%20b%2Fc&state=retryable&after=57&limit=10 HTTP/1.1"
    );
}

#[test]
fn a_chunked_answer_is_decoded_across_chunk_boundaries_extensions_and_trailers() {
    let json = r#"{"queues": [{"queue": "default", "paused": true, "available": 3}]}"#;
    let (first, second) = json.split_at(17);
    let answer =
        format!("{CHUNKED_HEAD}{}{:X};name=value\r\n{second}\r\n0\r\nTrailer: yes\r\n\r\n", chunk(first), second.len());
    let daemon = FakeDaemon::start(vec![Answer::whole(answer)]);
    let queues = daemon.client().queues().expect("the queues");
    assert_eq!(queues.queues[0].queue, "default");
    assert!(queues.queues[0].paused);
    assert_eq!(queues.queues[0].available, 3);
}

#[test]
fn an_error_answer_becomes_the_daemons_code_message_and_fields() {
    let body = r#"{"error": {"code": "job_not_found", "message": "no job 42", "job": 42}}"#;
    let daemon = FakeDaemon::start(vec![Answer::json("404 Not Found", body)]);
    let error = daemon.client().job(42).expect_err("no such job");
    let ClientError::Api(api_error) = &error else { panic!("expected an API error, got {error:?}") };
    assert_eq!(api_error.status, 404);
    assert_eq!(api_error.code, "job_not_found");
    assert_eq!(api_error.message, "no job 42");
    assert_eq!(api_error.fields["job"], 42);
    assert_eq!(error.code(), Some("job_not_found"));
    assert_eq!(error.to_string(), "no job 42 (job_not_found)");
}

#[test]
fn an_error_answer_that_is_not_the_documented_json_keeps_its_status_and_text() {
    let daemon =
        FakeDaemon::start(vec![Answer::whole("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\n\r\nupstream!\r\n")]);
    let error = daemon.client().health().expect_err("an error");
    assert_eq!(error.code(), Some("http_502"));
    assert_eq!(error.to_string(), "upstream! (http_502)");
}

#[test]
fn a_missing_socket_means_no_daemon_is_running_and_says_how_to_start_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let error = Client::for_dir(dir.path()).health().expect_err("nothing listens");
    assert!(error.is_no_daemon(), "{error:?}");
    let dir = dir.path().display();
    assert_eq!(
        error.to_string(),
        format!("no corvee daemon is running for {dir}; start one with 'corvee serve --dir {dir}'")
    );
}

#[test]
fn a_socket_left_by_a_dead_daemon_means_no_daemon_is_running() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("corvee.sock")).expect("bind");
    drop(listener); // the file stays; connecting is refused
    let error = Client::for_dir(dir.path()).health().expect_err("nothing listens");
    assert!(matches!(error, ClientError::NoDaemon { cause: std::io::ErrorKind::ConnectionRefused, .. }), "{error:?}");
}

#[test]
fn a_body_cut_short_is_an_error_not_a_short_answer() {
    let daemon = FakeDaemon::start(vec![
        Answer::whole("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"id\": 4"),
        Answer::whole(format!("{CHUNKED_HEAD}{}", chunk("{\"id\""))),
    ]);
    let client = daemon.client();
    let error = client.payload(1).expect_err("truncated");
    assert!(
        matches!(&error, ClientError::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof),
        "{error:?}"
    );
    let error = client.payload(1).expect_err("truncated");
    assert!(
        matches!(&error, ClientError::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof),
        "{error:?}"
    );
    daemon.requests();
}

#[test]
fn an_answer_that_is_not_http_is_a_protocol_error() {
    let daemon = FakeDaemon::start(vec![
        Answer::whole("SSH-2.0-OpenSSH\r\n\r\n"),
        Answer::whole(format!("{CHUNKED_HEAD}zz\r\n")),
    ]);
    let client = daemon.client();
    let error = client.health().expect_err("not HTTP");
    assert!(matches!(error, ClientError::Protocol { .. }), "{error:?}");
    let error = client.health().expect_err("bad chunk size");
    assert!(matches!(error, ClientError::Protocol { .. }), "{error:?}");
    daemon.requests();
}

#[test]
fn payload_bytes_come_back_as_sent() {
    let bytes: Vec<u8> = (0..=255).collect();
    let mut answer =
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", bytes.len())
            .into_bytes();
    answer.extend_from_slice(&bytes);
    let daemon = FakeDaemon::start(vec![Answer::whole(answer)]);
    assert_eq!(daemon.client().payload(9).expect("the payload"), bytes);
    assert_eq!(daemon.requests()[0].request_line, "GET /v1/jobs/9/payload HTTP/1.1");
}

#[test]
fn a_followed_log_hands_over_each_chunk_before_the_answer_is_complete() {
    let (go, go_receiver) = mpsc::channel();
    let answer = Answer {
        parts: vec![
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCorvee-Log-Offset: 0\r\n\r\n{}",
                chunk("line 1\n")
            )
            .into_bytes(),
            format!("{}0\r\n\r\n", chunk("line 2\n")).into_bytes(),
        ],
        go: Some(go_receiver),
        sent: None,
    };
    let daemon = FakeDaemon::start(vec![answer]);
    let mut follow = daemon.client().follow_logs(42, 0).expect("following");
    assert_eq!(follow.offset_header(), Some(0));
    let mut buffer = [0; 64];
    // The daemon has sent only the first chunk: reading must return it
    // rather than wait for the rest (which would never come: it waits on us).
    let read = follow.read(&mut buffer).expect("the first line");
    assert_eq!(&buffer[..read], b"line 1\n");
    go.send(()).expect("the fake daemon waits");
    let mut rest = Vec::new();
    follow.read_to_end(&mut rest).expect("the rest");
    assert_eq!(rest, b"line 2\n");
    assert_eq!(daemon.requests()[0].request_line, "GET /v1/jobs/42/logs?offset=0&follow=true HTTP/1.1");
}

#[test]
fn logs_return_the_text_and_the_offset_to_continue_from() {
    let daemon = FakeDaemon::start(vec![Answer::whole(
        "HTTP/1.1 200 OK\r\nCorvee-Log-Offset: 131\r\nContent-Length: 31\r\n\r\n2026-11-22T10:15:30Z stdout hi\n",
    )]);
    let chunk = daemon.client().logs(42, 100).expect("the log");
    assert_eq!(chunk.text, b"2026-11-22T10:15:30Z stdout hi\n");
    assert_eq!(chunk.next_offset, Some(131));
    assert_eq!(daemon.requests()[0].request_line, "GET /v1/jobs/42/logs?offset=100 HTTP/1.1");
}

#[test]
fn the_event_stream_is_parsed_into_typed_events_as_they_arrive() {
    let (go, go_receiver) = mpsc::channel();
    let first = concat!(
        ": keep-alive\n\n",
        "event: job\ndata: {\"id\": 42, \"queue\": \"default\", \"state\": \"running\", \"execution\": \"42.1\"}\n\n",
    );
    let second = concat!(
        "event: progress\r\ndata: {\"id\": 42, \"execution\": \"42.1\", \"done\": 1, \"total\": 2, \"message\": \"step 1\"}\r\n\r\n",
        "event: something_new\ndata: {\"a\": 1}\ndata: {\"b\": 2}\n\n",
        "event: lagged\ndata: {\"missed\": 3}\n\n",
        "event: job_deleted\ndata: {\"id\": 42}\n\n",
    );
    let answer = Answer {
        parts: vec![
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                chunk(first)
            )
            .into_bytes(),
            format!("{}0\r\n\r\n", chunk(second)).into_bytes(),
        ],
        go: Some(go_receiver),
        sent: None,
    };
    let daemon = FakeDaemon::start(vec![answer]);
    let mut events = daemon.client().events(Some(42)).expect("subscribed");
    let Some(Ok(Event::Job(job_event))) = events.next() else { panic!("expected a job event") };
    assert_eq!((job_event.id, job_event.state), (42, JobState::Running));
    go.send(()).expect("the fake daemon waits");
    let rest: Vec<Event> = events.map(|event| event.expect("a valid event")).collect();
    assert_eq!(
        rest,
        [
            Event::Progress(ProgressEvent {
                id: 42,
                execution: Some("42.1".to_string()),
                done: 1,
                total: Some(2),
                message: Some("step 1".to_string())
            }),
            Event::Unknown { event: "something_new".to_string(), data: "{\"a\": 1}\n{\"b\": 2}".to_string() },
            Event::Lagged { missed: 3 },
            Event::JobDeleted { id: 42 },
        ]
    );
    assert_eq!(daemon.requests()[0].request_line, "GET /v1/events?job=42 HTTP/1.1");
}

#[test]
fn an_event_whose_json_is_wrong_is_reported_and_the_stream_goes_on() {
    let events = concat!("event: job\ndata: {\"id\": \"x\"}\n\n", "event: lagged\ndata: {\"missed\": 1}\n\n");
    let daemon = FakeDaemon::start(vec![Answer::whole(format!("{CHUNKED_HEAD}{}0\r\n\r\n", chunk(events)))]);
    let results: Vec<_> = daemon.client().events(None).expect("subscribed").collect();
    assert!(matches!(results[0], Err(ClientError::Decode { .. })), "{results:?}");
    assert!(matches!(results[1], Ok(Event::Lagged { missed: 1 })), "{results:?}");
    assert_eq!(results.len(), 2);
}

#[test]
fn subscribing_to_events_reports_a_refusal_instead_of_an_empty_stream() {
    let body = r#"{"error": {"code": "shutting_down", "message": "the daemon is stopping"}}"#;
    let daemon = FakeDaemon::start(vec![Answer::json("503 Service Unavailable", body)]);
    let error = daemon.client().events(None).expect_err("refused");
    assert_eq!(error.code(), Some("shutting_down"));
}

#[test]
fn cancel_retry_move_and_queue_actions_use_their_routes() {
    let daemon = FakeDaemon::start(vec![
        Answer::json("200 OK", r#"{"outcome": "cancel_requested", "execution": "42.1"}"#),
        Answer::json("200 OK", r#"{"outcome": "cancelled"}"#),
        Answer::json("200 OK", r#"{"id": 42}"#),
        Answer::json("200 OK", r#"{"id": 42}"#),
        Answer::json("200 OK", r#"{"queue": "my queue", "paused": true}"#),
        Answer::json("200 OK", r#"{"queue": "default", "purged": 3}"#),
    ]);
    let client = daemon.client();
    let cancelled = client.cancel(42).expect("cancel");
    assert_eq!(cancelled.outcome, corvee::client::CancelOutcome::CancelRequested);
    assert_eq!(cancelled.execution.as_deref(), Some("42.1"));
    assert_eq!(client.cancel_execution("42.1").expect("cancel").outcome, corvee::client::CancelOutcome::Cancelled);
    assert_eq!(client.retry(42).expect("retry"), 42);
    assert_eq!(client.move_job(42, "other").expect("move"), 42);
    assert!(client.pause("my queue").expect("pause").paused);
    assert_eq!(client.purge("default").expect("purge").purged, 3);
    let requests = daemon.requests();
    let lines: Vec<&str> = requests.iter().map(|request| request.request_line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "POST /v1/jobs/42/cancel HTTP/1.1",
            "POST /v1/executions/42.1/cancel HTTP/1.1",
            "POST /v1/jobs/42/retry HTTP/1.1",
            "POST /v1/jobs/42/move HTTP/1.1",
            "POST /v1/queues/my%20queue/pause HTTP/1.1",
            "POST /v1/queues/default/purge HTTP/1.1",
        ]
    );
    assert_eq!(requests[0].header("content-length").as_deref(), Some("0"));
    assert_eq!(requests[3].body, br#"{"queue":"other"}"#);
}

#[test]
fn a_tcp_client_sends_its_token_but_never_shows_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("an address").to_string();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("a connection");
        let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
        let mut head = String::new();
        loop {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut reader, &mut line).expect("a line");
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let body = r#"{"status": "ok", "version": "0.1.0", "dir": "/d", "uptime_ms": 5, "node": 1}"#;
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        std::io::Write::write_all(&mut &stream, answer.as_bytes()).expect("answer");
        head
    });
    let client = Client::tcp(address.clone(), Some("s3cret-token".to_string()));
    let health = client.health().expect("healthy");
    assert_eq!(health.status, "ok");
    assert_eq!(health.other["node"], 1);
    let head = server.join().expect("the server thread");
    assert!(head.contains("Authorization: Bearer s3cret-token\r\n"), "{head}");
    assert!(head.contains(&format!("Host: {address}\r\n")), "{head}");
    assert!(!format!("{client:?}").contains("s3cret"), "the token shows in {client:?}");
}

#[test]
fn a_refused_tcp_connection_means_no_daemon_listens_there() {
    // Bind to learn a free port, then close it: connecting is refused.
    let address = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").to_string();
    let error = Client::tcp(address.clone(), None).health().expect_err("nothing listens");
    assert!(error.is_no_daemon(), "{error:?}");
    assert_eq!(error.to_string(), format!("no corvee daemon is listening on {address}"));
}
