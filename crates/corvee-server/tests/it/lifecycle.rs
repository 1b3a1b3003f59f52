//! Cancelling running jobs, graceful shutdown and restart, and the spool
//! directory, with real daemons and real processes (command jobs).

use serde_json::{json, Value};

use crate::support::{post_json, request, TestDaemon};

async fn job(socket: &std::path::Path, id: u64) -> Value {
    request(socket, "GET", &format!("/v1/jobs/{id}"), None).await.json()
}

/// Waits (on the event stream, bounded) until a job reaches `state`.
async fn wait_for_state(daemon: &TestDaemon, id: u64, state: &str) -> Value {
    let mut events = daemon.running.as_ref().unwrap().daemon.hub.subscribe();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let current = job(&daemon.socket(), id).await;
        if current["state"] == state {
            return current;
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(_) => {}
            Err(_) => panic!("job {id} never became {state}: {current}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_command_interrupts_it() {
    let daemon = TestDaemon::start("").await;
    let socket = daemon.socket();
    let id = post_json(&socket, "/v1/commands", json!({"argv": ["sleep", "600"]})).await.json()["jobs"][0]["id"]
        .as_u64()
        .unwrap();
    wait_for_state(&daemon, id, "running").await;
    let cancelled = post_json(&socket, &format!("/v1/jobs/{id}/cancel"), json!({})).await.json();
    assert_eq!(cancelled["outcome"], "cancel_requested");
    assert_eq!(cancelled["execution"], format!("{id}.1"));
    let done = request(&socket, "GET", &format!("/v1/jobs/{id}/wait?timeout_ms=30000"), None).await.json();
    assert_eq!(done["state"], "cancelled", "{done}");
    // Cancelling a finished job is refused with the job's state.
    let again = post_json(&socket, &format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["error"]["state"], "cancelled");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_gives_running_jobs_back_and_they_run_after_restart() {
    let daemon = TestDaemon::start("shutdown_grace = \"5s\"").await;
    let socket = daemon.socket();
    let id = post_json(&socket, "/v1/commands", json!({"argv": ["sleep", "600"]})).await.json()["jobs"][0]["id"]
        .as_u64()
        .unwrap();
    wait_for_state(&daemon, id, "running").await;
    let dir = daemon.dir;
    let running = daemon.running.unwrap();
    running.shutdown().await.unwrap();

    // Same directory, new daemon: the job was released, not failed.
    let config = dir.path().join("corvee.toml");
    let restarted =
        corvee_server::start(corvee_server::ServeOptions { dir: dir.path().join("data"), config: Some(config) })
            .await
            .unwrap();
    let daemon = TestDaemon { dir, running: Some(restarted) };
    let view = wait_for_state(&daemon, id, "running").await;
    assert_eq!(view["attempt"], 2, "{view}");
    assert_eq!(view["attempts_used"], 1, "the shutdown did not count the first attempt: {view}");
    assert!(view["errors"].as_array().unwrap().is_empty(), "{view}");
    post_json(&daemon.socket(), &format!("/v1/jobs/{id}/cancel"), json!({})).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_files_are_ingested_once_and_bad_ones_set_aside() {
    // Files dropped while no daemon runs.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dirs = corvee_server::spool::SpoolDirs::of(&data);
    dirs.create().unwrap();
    std::fs::write(dirs.new.join("0002.json"), r#"{"jobs": [{"kind": "a"}, {"kind": "b"}]}"#).unwrap();
    std::fs::write(dirs.new.join("0003.json"), r#"{"kind": "#).unwrap();
    std::fs::write(dir.path().join("corvee.toml"), "[http]\nlisten = \"none\"\n").unwrap();
    let running = corvee_server::start(corvee_server::ServeOptions {
        dir: data.clone(),
        config: Some(dir.path().join("corvee.toml")),
    })
    .await
    .unwrap();
    let mut events = running.daemon.hub.subscribe();
    let daemon = TestDaemon { dir, running: Some(running) };
    let socket = daemon.socket();
    // The files present at start may be handled before we subscribed:
    // check the state, and use events only as wake-ups (each is published
    // once its file was dealt with).
    let failed_file = dirs.failed.join("0003.json");
    loop {
        let count = request(&socket, "GET", "/v1/jobs", None).await.json()["jobs"].as_array().unwrap().len();
        if count == 2 && failed_file.exists() && !dirs.new.join("0002.json").exists() {
            break;
        }
        next_spool_event(&mut events).await;
    }
    // The bad file was set aside with the reason.
    let reason = std::fs::read_to_string(dirs.failed.join("0003.json.error")).unwrap();
    assert!(reason.contains("not JSON"), "{reason}");

    // A file dropped while the daemon runs (the Maildir way) is noticed.
    let drop_file = |name: &str| {
        let temporary = dirs.tmp.join(name);
        std::fs::write(&temporary, r#"{"queue": "inbox", "kind": "mail", "payload": "hello"}"#).unwrap();
        std::fs::rename(&temporary, dirs.new.join(name)).unwrap();
    };
    drop_file("0001.json");
    assert_eq!(spool_outcome(&mut events, "0001.json").await, "ingested");
    let jobs = request(&socket, "GET", "/v1/jobs", None).await.json();
    let kinds: Vec<&str> = jobs["jobs"].as_array().unwrap().iter().map(|j| j["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["a", "b", "mail"]);
    assert_eq!(jobs["jobs"][2]["unique_key"], "spool:0001.json");
    assert!(!dirs.new.join("0001.json").exists());

    // The same file again (as after a crash between journaling its job and
    // deleting it): nothing new is enqueued.
    drop_file("0001.json");
    assert_eq!(spool_outcome(&mut events, "0001.json").await, "duplicate");
    assert!(!dirs.new.join("0001.json").exists());
    let jobs = request(&socket, "GET", "/v1/jobs", None).await.json();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 3, "a spool file was enqueued twice: {jobs}");
    daemon.stop().await;
}

/// The outcome of the next spool event about `name`.
async fn spool_outcome(
    events: &mut tokio::sync::broadcast::Receiver<corvee_server::hub::ApiEvent>,
    name: &str,
) -> &'static str {
    loop {
        let (file, outcome) = next_spool_event(events).await;
        if file == name {
            return outcome;
        }
    }
}

/// The next spool event (within 30 s).
async fn next_spool_event(
    events: &mut tokio::sync::broadcast::Receiver<corvee_server::hub::ApiEvent>,
) -> (String, &'static str) {
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(30), events.recv())
            .await
            .expect("a spool event within 30 s")
            .unwrap();
        if let corvee_server::hub::ApiEvent::Spool { file, outcome, .. } = event {
            return (file, outcome);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_survives_a_restart_unless_the_configuration_decides() {
    let daemon = TestDaemon::start("[queues.mail]\nconcurrency = 2\n[queues.news]\npaused = false\n").await;
    let socket = daemon.socket();
    for queue in ["mail", "news"] {
        assert_eq!(post_json(&socket, &format!("/v1/queues/{queue}/pause"), json!({})).await.status, 200);
    }
    let dir = daemon.dir;
    daemon.running.unwrap().shutdown().await.unwrap();
    let restarted = corvee_server::start(corvee_server::ServeOptions {
        dir: dir.path().join("data"),
        config: Some(dir.path().join("corvee.toml")),
    })
    .await
    .unwrap();
    let daemon = TestDaemon { dir, running: Some(restarted) };
    let queues = request(&daemon.socket(), "GET", "/v1/queues", None).await.json();
    let paused = |name: &str| {
        queues["queues"].as_array().unwrap().iter().find(|queue| queue["queue"] == name).unwrap()["paused"].clone()
    };
    assert_eq!(paused("mail"), true, "the file says nothing of pausing mail: {queues}");
    assert_eq!(paused("news"), false, "the file says news runs: {queues}");
    daemon.stop().await;
}

/// Polls a job until it reaches `state` (bounded). For tests whose daemon
/// misses events on purpose, where waiting on the event stream could miss
/// the very change.
async fn poll_for_state(socket: &std::path::Path, id: u64, state: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let current = job(socket, id).await;
        if current["state"] == state {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "job {id} never became {state}: {current}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// With a store-event buffer of one, the daemon misses most events of a
/// burst, the interrupts of cancelled jobs among them; it finds those
/// cancels from the state instead, so every running job cancelled in the
/// middle of a burst of enqueues ends cancelled, and waiting on a job whose
/// change was missed still returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_missed_in_a_burst_of_events_still_interrupt_their_jobs() {
    let daemon = TestDaemon::start("event_buffer = 1\n\n[commands]\nconcurrency = 8\n").await;
    let socket = daemon.socket();
    let mut ids = Vec::new();
    for _ in 0..8 {
        let created = post_json(&socket, "/v1/commands", json!({"argv": ["sleep", "600"]})).await.json();
        ids.push(created["jobs"][0]["id"].as_u64().unwrap());
    }
    for &id in &ids {
        poll_for_state(&socket, id, "running").await;
    }
    // Bursts of 64 jobs into a queue nobody takes, while the eight are
    // cancelled one by one.
    let burst = json!({"jobs": (0..64).map(|_| json!({"queue": "idle", "kind": "k"})).collect::<Vec<_>>()});
    let cancel_all = async {
        for &id in &ids {
            let cancelled = post_json(&socket, &format!("/v1/jobs/{id}/cancel"), json!({})).await.json();
            assert_eq!(cancelled["outcome"], "cancel_requested", "{cancelled}");
        }
    };
    let enqueue_bursts = async {
        for _ in 0..20 {
            assert_eq!(post_json(&socket, "/v1/jobs", burst.clone()).await.status, 201);
        }
    };
    tokio::join!(cancel_all, enqueue_bursts);
    for &id in &ids {
        let done = request(&socket, "GET", &format!("/v1/jobs/{id}/wait?timeout_ms=30000"), None).await.json();
        assert_eq!(done["state"], "cancelled", "{done}");
    }
    let metrics = String::from_utf8(request(&socket, "GET", "/metrics", None).await.body).unwrap();
    let missed: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("corvee_store_events_missed_total "))
        .expect("the missed-events counter")
        .parse()
        .unwrap();
    assert!(missed > 0, "the burst overflowed the buffer of one:\n{metrics}");
    // Finished jobs are counted by the store, not from the events missed.
    let cancelled = "corvee_jobs_finished_total{queue=\"commands\",state=\"cancelled\"} 8";
    assert!(metrics.lines().any(|line| line == cancelled), "{metrics}");
    daemon.stop().await;
}

/// A queue's finished jobs hold at most `max_finished_bytes`: past it the
/// daemon deletes the oldest within a second, and `/v1/queues` and
/// `/metrics` show what they hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_beyond_their_byte_limit_are_deleted_by_the_daemon() {
    // Room for ten cancelled jobs of 100 bytes.
    let job_bytes = corvee_core::JOB_OVERHEAD_BYTES + 100;
    let daemon = TestDaemon::start(&format!("[queues.small]\nmax_finished_bytes = {}\n", 10 * job_bytes)).await;
    let socket = daemon.socket();
    let jobs: Vec<_> =
        (0..20).map(|i| json!({"queue": "small", "kind": "k", "payload": format!("{i:0>100}")})).collect();
    let created = post_json(&socket, "/v1/jobs", json!({ "jobs": jobs })).await.json();
    let ids: Vec<u64> = created["jobs"].as_array().unwrap().iter().map(|job| job["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 20, "{created}");
    for &id in &ids {
        assert_eq!(post_json(&socket, &format!("/v1/jobs/{id}/cancel"), json!({})).await.status, 200);
    }
    // Twice the limit held: the daemon deletes the oldest down to 7/8 of
    // it, i.e. keeps the 8 most recent (8.75 jobs' worth).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let small = loop {
        let queues = request(&socket, "GET", "/v1/queues", None).await.json();
        let small =
            queues["queues"].as_array().unwrap().iter().find(|queue| queue["queue"] == "small").unwrap().clone();
        if small["finished_bytes"].as_u64().unwrap() <= 10 * job_bytes {
            break small;
        }
        assert!(tokio::time::Instant::now() < deadline, "never compacted: {small}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(
        (small["cancelled"].as_u64(), small["finished_bytes"].as_u64()),
        (Some(8), Some(8 * job_bytes)),
        "{small}"
    );
    for (index, &id) in ids.iter().enumerate() {
        let status = request(&socket, "GET", &format!("/v1/jobs/{id}"), None).await.status;
        assert_eq!(status, if index < 12 { 404 } else { 200 }, "job {id}, the {index}th cancelled");
    }
    let metrics = String::from_utf8(request(&socket, "GET", "/metrics", None).await.body).unwrap();
    let held = format!("corvee_queue_finished_bytes{{queue=\"small\"}} {}", 8 * job_bytes);
    assert!(metrics.lines().any(|line| line == held), "{metrics}");
    // Deleting finished jobs does not take back what the counter counted.
    let cancelled = "corvee_jobs_finished_total{queue=\"small\",state=\"cancelled\"} 20";
    assert!(metrics.lines().any(|line| line == cancelled), "{metrics}");
    daemon.stop().await;
}
