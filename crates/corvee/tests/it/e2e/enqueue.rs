//! Every way in: the CLI (`corvee add`), raw HTTP on the Unix socket, the
//! client library, and the spool directory while no daemon runs (`corvee
//! add --offline`). Jobs go to a Rust and a Python example worker; each
//! completes with the worker's result, and its log holds the worker's lines.

use corvee::client::{JobRequest, JobState, ListFilter};

use super::daemon::{poll_until, raw_request, TestDaemon};
use super::events::Events;
use super::example_worker::{pool, Example};

const TWO_STEPS: &str = r#"{"steps": 2, "step_ms": 10}"#;
const TWO_STEPS_RESULT: &str = r#"{"steps_done":2,"resumed_from":0}"#;

/// A job the test enqueued and what it must end with.
struct Expected {
    id: u64,
    how: &'static str,
    queue: &'static str,
    result: Vec<u8>,
}

fn config() -> String {
    format!(
        "{}{}",
        pool(Example::Rust, "rust", &["rust"], 1, &[]),
        pool(Example::Python, "python", &["python"], 1, &[])
    )
}

#[test]
fn jobs_from_the_cli_http_the_library_and_the_offline_spool_all_complete_on_both_workers() {
    let mut daemon = TestDaemon::prepare(&config());

    // The spool, while no daemon runs: the file waits in incoming/new.
    let mut offline = Vec::new();
    for (queue, kind, payload) in [("rust", "steps", TWO_STEPS), ("python", "echo", "offline to python")] {
        let path = daemon.corvee_ok(&["add", "--offline", "-q", queue, "-k", kind, payload]);
        let path = std::path::PathBuf::from(path.trim_end());
        assert_eq!(path.parent(), Some(daemon.dir().join("incoming/new").as_path()));
        assert!(path.is_file(), "{} is written", path.display());
        offline.push((path, queue, kind, payload));
    }

    daemon.launch();
    let mut events = Events::subscribe(&daemon.client);
    let mut expected = Vec::new();

    // The spool files are ingested at start: each becomes one job whose
    // unique key is the file's name, and the file is gone.
    for (path, queue, kind, payload) in offline {
        let name = path.file_name().and_then(|name| name.to_str()).expect("a file name").to_string();
        let key = format!("spool:{name}");
        let listed = daemon.client.list(&ListFilter { queue: Some(queue.into()), ..ListFilter::default() }).unwrap();
        let id = match listed.jobs.iter().find(|job| job.unique_key.as_deref() == Some(key.as_str())) {
            Some(job) => job.id,
            None => {
                let ingested =
                    events.wait_for_other(&format!("{name} ingested"), "spool", |data| data["file"] == name.as_str());
                assert_eq!(ingested["outcome"], "ingested", "{ingested}");
                ingested["jobs"][0].as_u64().expect("the job's id")
            }
        };
        let job = daemon.client.job(id).unwrap();
        assert_eq!((job.kind.as_str(), job.unique_key.as_deref()), (kind, Some(key.as_str())));
        // The file goes right after its job is journaled (so it may still
        // be there an instant after the job is listed).
        poll_until(&format!("{} deleted once ingested", path.display()), || !path.exists());
        let result = if kind == "steps" { TWO_STEPS_RESULT.into() } else { payload.into() };
        expected.push(Expected { id, how: "spool", queue, result });
    }

    // The CLI prints the id and only the id.
    for (queue, kind, payload) in [("rust", "echo", "cli to rust"), ("python", "steps", TWO_STEPS)] {
        let stdout = daemon.corvee_ok(&["add", "-q", queue, "-k", kind, payload]);
        let id = stdout.trim_end().parse().unwrap_or_else(|_| panic!("only the id on stdout: {stdout:?}"));
        let result = if kind == "steps" { TWO_STEPS_RESULT.into() } else { payload.into() };
        expected.push(Expected { id, how: "cli", queue, result });
    }

    // Raw HTTP, a batch of two.
    let body = serde_json::json!({"jobs": [
        {"queue": "rust", "kind": "steps", "payload": TWO_STEPS},
        {"queue": "python", "kind": "echo", "payload": "http to python"},
    ]});
    let answer = raw_request(daemon.dir(), "POST", "/v1/jobs", body.to_string().as_bytes());
    assert_eq!(answer.status, 201, "{:?}", String::from_utf8_lossy(&answer.body));
    let jobs = answer.json()["jobs"].as_array().expect("a list of jobs").clone();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|job| job["duplicate"] == false));
    expected.push(Expected {
        id: jobs[0]["id"].as_u64().unwrap(),
        how: "http",
        queue: "rust",
        result: TWO_STEPS_RESULT.into(),
    });
    expected.push(Expected {
        id: jobs[1]["id"].as_u64().unwrap(),
        how: "http",
        queue: "python",
        result: "http to python".into(),
    });

    // The library, with a payload that is not text (sent as base64).
    let binary = vec![0u8, 159, 146, 150, 255, b'\n', 7];
    for queue in ["rust", "python"] {
        let request = JobRequest::new("echo").on_queue(queue).with_payload_bytes(binary.clone());
        let enqueued = daemon.client.enqueue(&request).expect("enqueue with the library");
        assert!(!enqueued.duplicate);
        expected.push(Expected { id: enqueued.id, how: "library", queue, result: binary.clone() });
    }
    let steps =
        daemon.client.enqueue(&JobRequest::new("steps").on_queue("python").with_text_payload(TWO_STEPS)).unwrap();
    expected.push(Expected { id: steps.id, how: "library", queue: "python", result: TWO_STEPS_RESULT.into() });

    let mut ids: Vec<u64> = expected.iter().map(|job| job.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), expected.len(), "every enqueue made a job of its own");

    for job in &expected {
        let finished = daemon.wait_finished(job.id);
        let what = format!("job {} ({}, queue {})", job.id, job.how, job.queue);
        assert_eq!(finished.state, JobState::Completed, "{what}: {finished:#?}");
        assert_eq!(finished.queue, job.queue, "{what}");
        assert_eq!(daemon.client.result(job.id).expect("the result"), job.result, "{what}");
        // The CLI prints the same bytes, raw.
        let shown = daemon.spawn_corvee(&["show", &job.id.to_string(), "--result"]).finish();
        assert_eq!(shown.code, Some(0), "{what}: {shown:?}");
        assert_eq!(shown.stdout_bytes, job.result, "{what}");
        if finished.kind == "steps" {
            let logs = daemon.corvee_ok(&["logs", &job.id.to_string()]);
            let source = format!("attempt=1 worker={}/", job.queue);
            for step in ["step 1 of 2 done", "step 2 of 2 done"] {
                assert!(
                    logs.lines().any(|line| line.contains(&source) && line.ends_with(&format!("info: {step}"))),
                    "{what}: {step:?} from {source} in\n{logs}"
                );
            }
            let progress = finished.progress.expect("the last progress");
            assert_eq!((progress.done, progress.total), (2, Some(2)), "{what}");
        }
    }
}
