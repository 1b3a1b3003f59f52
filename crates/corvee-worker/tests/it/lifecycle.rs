//! A worker's life: heartbeats keep a worker whose job is silent from being
//! taken for hung; `shutdown` lets running jobs finish, then the worker says
//! goodbye and exits 0; at the shutdown deadline a long job is interrupted
//! and returns its checkpoint first; and a worker whose supervisor goes away
//! (EOF on its socket, or a reset when frames were left unread) exits on its
//! own, with status 0, even with a job running.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use corvee_proto::{
    Capabilities, FrameDecoder, Job, Message, Payload, Peer, SendBuffer, Welcome, DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
};
use corvee_supervisor::{Event, Outcome, ProcessExit};

use crate::support::{
    for_both_sdks, job, key, sdk_pool, start_pool, worker_argv, worker_env, Events, Sdk, EVENT_TIMEOUT,
};

fn exit_of(events: &Events) -> (String, ProcessExit) {
    events
        .seen
        .iter()
        .find_map(|event| match event {
            Event::WorkerExited { reason, exit, .. } => Some((reason.clone(), *exit)),
            _ => None,
        })
        .expect("the worker exited")
}

for_both_sdks!(heartbeats_keep_a_worker_with_a_silent_job_alive);

async fn heartbeats_keep_a_worker_with_a_silent_job_alive(sdk: Sdk) {
    // Without heartbeats the supervisor would call the worker hung after
    // 1.5 s of silence; the job is silent for 4 s.
    let (pool, mut events) = start_pool(sdk_pool(sdk, "heartbeats", &[]));
    events.ready().await;
    pool.submit(job(1, "sleep", b"4000")).unwrap();
    assert_eq!(events.result_text(key(1, 1)).await, "slept");
    crate::support::stop(pool, &mut events).await;
}

for_both_sdks!(shutdown_lets_the_running_job_finish_then_the_worker_says_goodbye_and_exits_0);

async fn shutdown_lets_the_running_job_finish_then_the_worker_says_goodbye_and_exits_0(sdk: Sdk) {
    let (pool, mut events) = start_pool(sdk_pool(sdk, "shutdown", &[]));
    events.ready().await;
    pool.submit(job(1, "steps", b"3 100")).unwrap();
    events.wait_for("the first checkpoint", |event| matches!(event, Event::Checkpoint { .. })).await;
    events.drain_while(pool.stop(EVENT_TIMEOUT)).await;
    assert_eq!(events.result_text(key(1, 1)).await, "done=3 resumed_from=0");
    let (reason, exit) = exit_of(&events);
    assert!(reason.contains("goodbye"), "{reason}");
    assert_eq!(exit, ProcessExit::Code(0));
    crate::support::assert_no_children();
}

for_both_sdks!(at_the_shutdown_deadline_a_long_job_is_interrupted_and_returns_its_checkpoint);

async fn at_the_shutdown_deadline_a_long_job_is_interrupted_and_returns_its_checkpoint(sdk: Sdk) {
    let (pool, mut events) = start_pool(sdk_pool(sdk, "shutdown-deadline", &[]));
    events.ready().await;
    pool.submit(job(1, "steps", b"100000 20")).unwrap();
    events.wait_for("the first checkpoint", |event| matches!(event, Event::Checkpoint { .. })).await;
    events.drain_while(pool.stop(Duration::from_millis(100))).await;
    let Outcome::Interrupted { checkpoint: Some(checkpoint), .. } = events.outcome(key(1, 1)).await else {
        panic!("expected an interrupted outcome with a checkpoint: {:#?}", events.seen);
    };
    let steps_done: u64 = String::from_utf8_lossy(checkpoint).parse().unwrap();
    assert!(steps_done >= 1);
    let (reason, exit) = exit_of(&events);
    assert!(reason.contains("goodbye"), "{reason}");
    assert_eq!(exit, ProcessExit::Code(0));
    crate::support::assert_no_children();
}

for_both_sdks!(a_worker_exits_by_itself_when_its_supervisor_closes_the_socket);

async fn a_worker_exits_by_itself_when_its_supervisor_closes_the_socket(sdk: Sdk) {
    abandon_a_running_worker(sdk, Abandon::NothingUnread).await;
}

for_both_sdks!(a_worker_exits_by_itself_when_its_supervisor_dies_with_frames_unread);

/// A socket closed with unread data in it resets the connection (the
/// worker reads ECONNRESET, not EOF): gone all the same.
async fn a_worker_exits_by_itself_when_its_supervisor_dies_with_frames_unread(sdk: Sdk) {
    abandon_a_running_worker(sdk, Abandon::FramesUnread).await;
}

#[derive(PartialEq)]
enum Abandon {
    NothingUnread,
    FramesUnread,
}

/// Plays the supervisor by hand (the real one cannot vanish from inside
/// this test process): starts the worker with its socket on fd 3, completes
/// the handshake, hands it a job that would run for a very long time, then
/// closes the socket. The worker must exit on its own, with status 0.
async fn abandon_a_running_worker(sdk: Sdk, how: Abandon) {
    let (supervisor_end, worker_end) = corvee_proto::socket_pair().unwrap();
    let argv = worker_argv(sdk, &[]);
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .envs(worker_env(sdk))
        .env(corvee_proto::WORKER_FD_ENV, corvee_proto::WORKER_FD.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let worker_raw = worker_end.as_raw_fd();
    // SAFETY: runs in the child between fork and exec, where nothing else
    // uses fd 3; `worker_end` stays open in the parent until after spawn.
    unsafe {
        command.pre_exec(move || corvee_proto::install_worker_fd(BorrowedFd::borrow_raw(worker_raw)));
    }
    let mut child = command.spawn().expect("starting the worker");
    drop(worker_end);

    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES).receiving_as(Peer::Supervisor);
    let receive = |decoder: &mut FrameDecoder| loop {
        if let Some(received) = decoder.next_message().unwrap() {
            return received.message;
        }
        assert!(decoder.recv_from(&supervisor_end).unwrap() > 0, "the worker closed its socket");
    };
    let Message::Hello(hello) = receive(&mut decoder) else { panic!("expected hello") };
    let sdk_name = if sdk == Sdk::Rust { "corvee-worker-rust" } else { "corvee-worker-python" };
    assert!(hello.sdk.as_deref().is_some_and(|name| name.starts_with(sdk_name)), "{:?}", hello.sdk);
    assert!(hello.job_kinds.contains(&"steps".to_owned()), "{:?}", hello.job_kinds);
    assert_eq!(hello.capabilities, Capabilities::ALL);

    let mut outgoing = SendBuffer::new();
    outgoing.set_peer_max_frame_bytes(hello.max_frame_bytes);
    let welcome = Welcome {
        protocol_version: PROTOCOL_VERSION,
        worker_id: 1,
        window: hello.window,
        max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        heartbeat_interval_ms: 0,
        payload_fd_threshold_bytes: 64 << 10,
        interrupt_grace_ms: 10_000,
        capabilities: Capabilities::ALL,
    };
    outgoing.push(&welcome, Vec::new()).unwrap();
    let long_job = |kind: &str, payload: &[u8]| Job {
        job_id: 1,
        attempt: 1,
        queue: "default".into(),
        kind: kind.into(),
        deadline_unix_ms: None,
        payload: Payload::Inline(payload.to_vec()),
        checkpoint: None,
        progress: None,
    };
    match how {
        Abandon::NothingUnread => {
            // Silent for ten minutes: nothing of the worker's will be unread.
            outgoing.push(&long_job("sleep", b"600000"), Vec::new()).unwrap();
            outgoing.send_to(&supervisor_end).unwrap();
        }
        Abandon::FramesUnread => {
            // A checkpoint and progress every 20 ms: wait until some are
            // waiting unread, then close.
            outgoing.push(&long_job("steps", b"100000 20"), Vec::new()).unwrap();
            outgoing.send_to(&supervisor_end).unwrap();
            let Message::Checkpoint(checkpoint) = receive(&mut decoder) else { panic!("expected a checkpoint") };
            assert_eq!(checkpoint.checkpoint, b"1");
            let mut poll = [rustix::event::PollFd::new(&supervisor_end, rustix::event::PollFlags::IN)];
            let timeout = rustix::event::Timespec { tv_sec: EVENT_TIMEOUT.as_secs() as i64, tv_nsec: 0 };
            assert_eq!(rustix::event::poll(&mut poll, Some(&timeout)).unwrap(), 1, "frames are waiting");
        }
    }
    drop(supervisor_end);

    let (exited, exit) = std::sync::mpsc::channel();
    let pid = child.id();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = exited.send(status);
    });
    match exit.recv_timeout(EVENT_TIMEOUT) {
        Ok(status) => {
            let status = status.unwrap();
            assert!(status.success(), "the worker exits cleanly when its supervisor is gone: {status}");
        }
        Err(_) => {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).unwrap(),
                rustix::process::Signal::KILL,
            );
            panic!("the worker did not exit within {EVENT_TIMEOUT:?} of losing its supervisor");
        }
    }
    waiter.join().unwrap();
}
