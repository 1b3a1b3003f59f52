//! A worker that dies right after every start is restarted with
//! exponential backoff and reported as crash-looping, instead of spinning.

use std::time::Duration;

use corvee_supervisor::Event;

use crate::support::{assert_no_children, start_pool, test_pool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dying_at_every_start_backs_off_exponentially_and_is_reported_as_crash_looping() {
    let (pool, mut events) = start_pool(test_pool("crash-loop", &["--startup=exit:1"]));
    let mut delays = Vec::new();
    while delays.len() < 5 {
        let index = events.wait_for("a restart", |event| matches!(event, Event::RestartScheduled { .. })).await;
        if let Event::RestartScheduled { delay, consecutive_failures, .. } = &events.seen[index] {
            assert_eq!(*consecutive_failures as usize, delays.len() + 1);
            delays.push(delay.as_millis() as u64);
        }
    }
    // 10 ms doubling, capped at 80 ms (the test pool's policy).
    assert_eq!(delays, [10, 20, 40, 80, 80]);
    let crash_looping: Vec<u32> = events
        .seen
        .iter()
        .filter_map(|event| match event {
            Event::CrashLooping { consecutive_failures, .. } => Some(*consecutive_failures),
            _ => None,
        })
        .collect();
    assert_eq!(crash_looping, [3, 4, 5], "reported from the third failure in a row on");
    let exits = events.seen.iter().filter(|event| matches!(event, Event::WorkerExited { .. })).count();
    assert_eq!(exits, 5, "one exit per start");
    assert!(!events.seen.iter().any(|event| matches!(event, Event::WorkerReady { .. })));
    assert_eq!(pool.free_capacity(), 0);
    events.drain_while(pool.stop(Duration::from_secs(5))).await;
    assert_no_children();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_hears_of_every_worker_process_the_moment_it_is_spawned() {
    let hooked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (sink, receiver) = corvee_supervisor::EventSink::channel(1024);
    let sink = {
        let hooked = hooked.clone();
        sink.on_process_started(move |pid| hooked.lock().unwrap().push(pid))
    };
    let pool = corvee_supervisor::WorkerPool::start(test_pool("hooked", &["--startup=exit:1"]), sink, None).unwrap();
    let mut events = crate::support::Events::new(receiver);
    let mut started = Vec::new();
    while started.len() < 3 {
        let index = events.wait_for("a start", |event| matches!(event, Event::WorkerStarted { .. })).await;
        if let Event::WorkerStarted { pid, .. } = &events.seen[index] {
            started.push(*pid);
        }
    }
    events.drain_while(pool.stop(Duration::from_secs(5))).await;
    // Every restart was heard of, before its event, with the same pid.
    let hooked = hooked.lock().unwrap().clone();
    assert_eq!(&hooked[..3], &started[..], "{hooked:?} vs {started:?}");
    assert_no_children();
}
