//! The per-job log store: lines with identity and time, a cap per job with
//! a truncation marker, long lines cut, reading from an offset, and
//! following a log as it grows until the job is finished.

use std::time::{Duration, SystemTime};

use corvee_supervisor::{
    CommandJob, CommandRunner, CommandRunnerConfig, CommandSpec, Event, EventSink, JobKey, LogLine, LogStore,
    LogStream, ProcessRef, LINE_TRUNCATED_MARKER, LOG_TRUNCATED_MARKER,
};

use crate::support::{assert_no_children, Events};

fn line(job_id: u64, text: &str) -> LogLine {
    let job = JobKey { job_id, attempt: 1 };
    LogLine {
        job: Some(job),
        source: ProcessRef::Command { job },
        stream: LogStream::Stdout,
        timestamp: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        text: text.to_owned(),
    }
}

#[test]
fn a_job_log_is_capped_with_one_marker_line() {
    let directory = tempfile::tempdir().unwrap();
    let store = LogStore::open(directory.path(), 300).unwrap();
    store.append(&line(1, "first")).unwrap();
    let first = std::fs::read_to_string(store.path_of(1)).unwrap();
    assert_eq!(first, "2023-11-14T22:13:20.123Z attempt=1 command stdout: first\n");
    for index in 0..100 {
        store.append(&line(1, &format!("line {index}"))).unwrap();
    }
    let text = std::fs::read_to_string(store.path_of(1)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(*lines.last().unwrap(), LOG_TRUNCATED_MARKER);
    assert_eq!(text.matches(LOG_TRUNCATED_MARKER).count(), 1);
    assert!(text.len() <= 300 + LOG_TRUNCATED_MARKER.len() + 1, "{} bytes", text.len());
    assert!(store.state(1).truncated);
    // Other jobs have their own cap.
    store.append(&line(2, "other job")).unwrap();
    assert!(!store.state(2).truncated);
    // Reading from an offset returns whole lines as written.
    let chunk = store.read(1, first.len() as u64, 1 << 20).unwrap();
    assert!(chunk.bytes.starts_with(b"2023-11-14T22:13:20.123Z attempt=1 command stdout: line 0\n"));
    assert_eq!(chunk.next_offset, text.len() as u64);
    assert!(store.read(1, chunk.next_offset, 1 << 20).unwrap().bytes.is_empty());
}

#[tokio::test]
async fn a_follower_sees_lines_as_they_come_and_ends_when_the_job_is_finished() {
    let directory = tempfile::tempdir().unwrap();
    let store = LogStore::open(directory.path(), 1 << 20).unwrap();
    store.append(&line(5, "before")).unwrap();
    let mut follower = store.follow(5, 0);
    let chunk = follower.next_chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&chunk.bytes).ends_with("stdout: before\n"));
    let waiting = tokio::spawn(async move {
        let chunk = follower.next_chunk().await.unwrap().unwrap();
        let end = follower.next_chunk().await.unwrap();
        (chunk, end)
    });
    // The follower waits (no sleep needed to prove it: it can only return
    // the line appended below).
    store.append(&line(5, "after")).unwrap();
    store.finish(5);
    let (chunk, end) = tokio::time::timeout(Duration::from_secs(30), waiting).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&chunk.bytes).ends_with("stdout: after\n"));
    assert_eq!(end, None, "the follow ends once the job is finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_very_long_output_line_is_cut_and_marked() {
    let (sink, receiver) = EventSink::channel(1024);
    let config = CommandRunnerConfig { max_line_bytes: 1000, ..CommandRunnerConfig::default() };
    let runner = CommandRunner::new(config, sink, None);
    let mut events = Events::new(receiver);
    let script = "print('x' * 100000); print('short')";
    let argv = vec!["python3".to_owned(), "-c".to_owned(), script.to_owned()];
    let spec = CommandSpec { argv, env: Vec::new(), cwd: None };
    runner.run(CommandJob { job_id: 1, attempt: 1, spec, retryable_on_failure: false }).unwrap();
    events.outcome(JobKey { job_id: 1, attempt: 1 }).await;
    let texts: Vec<&str> = events
        .seen
        .iter()
        .filter_map(|event| match event {
            Event::Log(line) => Some(line.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert_eq!(texts[0], format!("{}{LINE_TRUNCATED_MARKER}", "x".repeat(1000)));
    assert_eq!(texts[1], "short");
    assert_no_children();
}
