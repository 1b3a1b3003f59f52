//! The HTTP API against a real daemon: enqueue, read, errors, command jobs.

use serde_json::json;

use crate::support::{post_json, request, TestDaemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_job_runs_and_completes() {
    let daemon = TestDaemon::start("").await;
    let socket = daemon.socket();
    let created = post_json(&socket, "/v1/commands", json!({"argv": ["true"]})).await;
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let id = created.json()["jobs"][0]["id"].as_u64().unwrap();
    let done = request(&socket, "GET", &format!("/v1/jobs/{id}/wait?timeout_ms=30000"), None).await;
    assert_eq!(done.status, 200);
    let job = done.json();
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["kind"], "command");
    assert_eq!(job["execution"], format!("{id}.1"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_named_errors_and_the_daemon_keeps_serving() {
    let daemon = TestDaemon::start("").await;
    let socket = daemon.socket();
    let cases = [
        ("POST", "/v1/jobs", Some(&b"{not json"[..]), 400, "invalid_json"),
        ("POST", "/v1/jobs", Some(&br#"{"kind": "x", "queue": "Bad Name"}"#[..]), 400, "invalid_queue_name"),
        ("POST", "/v1/jobs", Some(&br#"{"kind": "x", "colour": "red"}"#[..]), 400, "invalid_json"),
        ("GET", "/v1/jobs/424242", None, 404, "job_not_found"),
        ("GET", "/v1/jobs/abc", None, 400, "invalid_request"),
        ("POST", "/v1/executions/7.1/cancel", None, 404, "execution_not_found"),
        ("GET", "/v1/nothing", None, 404, "not_found"),
        ("DELETE", "/v1/jobs", None, 405, "method_not_allowed"),
    ];
    for (method, path, body, status, code) in cases {
        let response = request(&socket, method, path, body).await;
        assert_eq!(response.status, status, "{method} {path}: {}", String::from_utf8_lossy(&response.body));
        let error = response.json();
        assert_eq!(error["error"]["code"], code, "{method} {path}: {error}");
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }
    let missing = request(&socket, "GET", "/v1/jobs/424242", None).await.json();
    assert_eq!(missing["error"]["job"], 424242);
    // Still serving.
    let created = post_json(&socket, "/v1/jobs", json!({"kind": "x", "payload": "hello"})).await;
    assert_eq!(created.status, 201);
    let health = request(&socket, "GET", "/v1/health", None).await.json();
    assert_eq!(health["status"], "ok");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_jobs_output_is_its_log() {
    let daemon = TestDaemon::start("").await;
    let socket = daemon.socket();
    let created = post_json(&socket, "/v1/commands", json!({"argv": ["echo", "hello from the job"]})).await;
    let id = created.json()["jobs"][0]["id"].as_u64().unwrap();
    let done = request(&socket, "GET", &format!("/v1/jobs/{id}/wait?timeout_ms=30000"), None).await.json();
    assert_eq!(done["state"], "completed");
    let logs = request(&socket, "GET", &format!("/v1/jobs/{id}/logs"), None).await;
    assert_eq!(logs.status, 200);
    let text = String::from_utf8(logs.body.clone()).unwrap();
    assert!(text.contains("stdout") && text.contains("hello from the job"), "{text}");
    let offset: usize = logs.header("corvee-log-offset").unwrap().parse().unwrap();
    assert_eq!(offset, logs.body.len());
    // Following a finished job's log returns what there is and ends.
    let followed = request(&socket, "GET", &format!("/v1/jobs/{id}/logs?follow=true"), None).await;
    assert_eq!(followed.body, logs.body);
    daemon.stop().await;
}

/// The journal's group-commit batches so far, from `/metrics`.
async fn journal_batches(socket: &std::path::Path) -> u64 {
    let metrics = String::from_utf8(request(socket, "GET", "/metrics", None).await.body).unwrap();
    metrics.lines().find_map(|line| line.strip_prefix("corvee_journal_batches_total ")).unwrap().parse().unwrap()
}

/// HTTP/2 with prior knowledge, on the same socket as HTTP/1.1: 64 enqueues
/// sent at once as streams of one connection are each acknowledged with
/// their own job, and they share fsyncs (HTTP/1.1 would answer them one
/// after another, one fsync each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_one_http2_connection_run_concurrently_and_share_fsyncs() {
    let daemon = TestDaemon::start("").await;
    let socket = daemon.socket();
    let batches_before = journal_batches(&socket).await;
    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let (sender, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut responses = Vec::new();
    for index in 0..64 {
        let mut sender = sender.clone().ready().await.unwrap();
        let request = http::Request::post("http://corvee/v1/jobs").header("content-type", "application/json");
        let (response, mut body) = sender.send_request(request.body(()).unwrap(), false).unwrap();
        let job = json!({"queue": "h2", "kind": "k", "payload": format!("job {index}")});
        body.send_data(bytes::Bytes::from(job.to_string()), true).unwrap();
        responses.push(response);
    }
    let mut ids = std::collections::BTreeSet::new();
    for response in responses {
        let response = response.await.unwrap();
        assert_eq!(response.status(), 201);
        let mut body = response.into_body();
        let mut answer = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            body.flow_control().release_capacity(chunk.len()).unwrap();
            answer.extend_from_slice(&chunk);
        }
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        ids.insert(answer["jobs"][0]["id"].as_u64().unwrap());
    }
    assert_eq!(ids.len(), 64, "each stream got a job of its own: {ids:?}");
    let batches = journal_batches(&socket).await - batches_before;
    assert!(batches < 64, "64 concurrent enqueues took {batches} fsyncs");
    let listed = request(&socket, "GET", "/v1/jobs?queue=h2&limit=1000", None).await.json();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 64);
    daemon.stop().await;
}

/// Sends a GET on an open HTTP/1.1 connection and reads the response's
/// body (keeping the connection open).
async fn get_on(stream: &mut tokio::net::UnixStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: corvee\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the daemon closed the connection");
        response.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&response).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
                .expect("a content-length")
                .parse()
                .unwrap();
            if body.len() >= length {
                return body.to_owned();
            }
        }
    }
}

/// With `max_connections = 2`, a third client waits until one of two open
/// connections closes, then is served; `/metrics` counts the open ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let daemon = TestDaemon::start("[http]\nmax_connections = 2\n").await;
    let socket = daemon.socket();
    let mut first = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let mut second = tokio::net::UnixStream::connect(&socket).await.unwrap();
    assert!(get_on(&mut first, "/v1/health").await.contains("\"ok\""));
    assert!(get_on(&mut second, "/v1/health").await.contains("\"ok\""));
    let mut third = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let waiting = tokio::spawn(async move {
        let body = get_on(&mut third, "/v1/health").await;
        (third, body)
    });
    // Not served while both slots are taken (an answer would come in
    // microseconds; a quarter of a second is a generous window).
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert!(!waiting.is_finished(), "a third connection was served beyond the limit");
    drop(first);
    let (_third, body) = tokio::time::timeout(std::time::Duration::from_secs(30), waiting)
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert!(body.contains("\"ok\""), "{body}");
    let metrics = get_on(&mut second, "/metrics").await;
    assert!(metrics.lines().any(|line| line == "corvee_http_connections{listener=\"unix\"} 2"), "{metrics}");
    daemon.stop().await;
}

/// Each listener has its own slots, taken by connections and not by a
/// listener waiting for one: with a limit of one, a TCP client is served
/// while the Unix socket's slot is free, and a Unix client while a TCP
/// connection is open; `/metrics` counts exactly the open connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_has_its_own_connection_slots() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let daemon = TestDaemon::start("[http]\nlisten = \"127.0.0.1:0\"\nmax_connections = 1\n").await;
    let address = daemon.running.as_ref().unwrap().tcp_address.expect("a TCP listener");
    let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    tcp.write_all(b"GET /v1/health HTTP/1.1\r\nhost: corvee\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 12];
    tokio::time::timeout(std::time::Duration::from_secs(30), tcp.read_exact(&mut answer))
        .await
        .expect("the TCP client is served")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let mut unix = tokio::net::UnixStream::connect(daemon.socket()).await.unwrap();
    let metrics = tokio::time::timeout(std::time::Duration::from_secs(30), get_on(&mut unix, "/metrics"))
        .await
        .expect("the Unix client is served while TCP holds its own slot");
    for (listener, open) in [("unix", 1), ("tcp", 1)] {
        let line = format!("corvee_http_connections{{listener=\"{listener}\"}} {open}");
        assert!(metrics.lines().any(|found| found == line), "{line} in\n{metrics}");
    }
    daemon.stop().await;
}

/// A client that connects and sends nothing is disconnected after
/// `http.idle_timeout`, which gives its connection slot back: with a limit
/// of one, the next client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    use tokio::io::AsyncReadExt;
    let daemon = TestDaemon::start("[http]\nmax_connections = 1\nidle_timeout = \"1s\"\n").await;
    let socket = daemon.socket();
    let mut silent = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let mut next = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let served = tokio::spawn(async move {
        let body = get_on(&mut next, "/v1/health").await;
        (next, body)
    });
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), silent.read(&mut byte))
        .await
        .expect("the silent connection is closed");
    assert_eq!(read.unwrap(), 0, "closed without an answer");
    let (mut next, body) = tokio::time::timeout(std::time::Duration::from_secs(30), served)
        .await
        .expect("the next client is served once the slot is free")
        .unwrap();
    assert!(body.contains("\"ok\""), "{body}");
    // Kept alive after its request, then silent: closed as well.
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), next.read(&mut byte))
        .await
        .expect("the idle keep-alive connection is closed");
    assert_eq!(read.unwrap(), 0);
    daemon.stop().await;
}
