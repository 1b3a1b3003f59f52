//! The protocol between two real processes: the test spawns this test
//! binary again as a worker with its socket on fd 3 (via
//! `install_worker_fd` in `pre_exec`), the worker finds it through
//! `CORVEE_WORKER_FD`, handshakes, receives a job whose payload is a
//! sealed memfd, and answers with a result memfd of its own.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use corvee_proto::{
    install_worker_fd, read_payload, sealed_memfd, socket_pair, worker_socket_from_env, Capabilities, Complete,
    FrameDecoder, Goodbye, Hello, Job, Message, Payload, Peer, SendBuffer, Welcome, DEFAULT_MAX_FRAME_BYTES,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, WORKER_FD, WORKER_FD_ENV,
};
use rustix::io::FdFlags;

use crate::fd_passing::receive;

/// Set in the environment of the child process only.
const CHILD_ENV: &str = "CORVEE_PROTO_TEST_WORKER_CHILD";

fn payload_bytes() -> Vec<u8> {
    (0..(5 << 20) as u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_worker_process_inherits_its_socket_and_exchanges_payload_fds() {
    let (supervisor_end, worker_end) = socket_pair().unwrap();
    // Bounded waits: a broken child fails the test instead of hanging it.
    rustix::net::sockopt::set_socket_timeout(
        &supervisor_end,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(30)),
    )
    .unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "worker_process::worker_child", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env(WORKER_FD_ENV, WORKER_FD.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let worker_raw = worker_end.as_raw_fd();
    // SAFETY: runs in the child between fork and exec, where nothing else
    // uses fd 3; `worker_end` stays open in the parent until after spawn.
    unsafe {
        command.pre_exec(move || install_worker_fd(BorrowedFd::borrow_raw(worker_raw)));
    }
    let mut child = command.spawn().unwrap();
    drop(worker_end);

    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES).receiving_as(Peer::Supervisor);
    let mut outgoing = SendBuffer::new();
    let hello = receive(&mut decoder, &supervisor_end, 1).remove(0);
    let Message::Hello(hello) = hello.message else {
        panic!("expected hello, got {:?}", hello.message);
    };
    assert_eq!(hello.worker_name, "rust-test-worker");
    outgoing.set_peer_max_frame_bytes(hello.max_frame_bytes);
    let welcome = Welcome {
        protocol_version: PROTOCOL_VERSION,
        worker_id: 1,
        window: 1,
        max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        heartbeat_interval_ms: 0,
        payload_fd_threshold_bytes: 64 << 10,
        interrupt_grace_ms: 1000,
        capabilities: hello.capabilities.intersection(Capabilities::ALL),
    };
    outgoing.push(&welcome, Vec::new()).unwrap();
    let payload = payload_bytes();
    let job = Job {
        job_id: 77,
        attempt: 2,
        queue: "default".into(),
        kind: "reverse".into(),
        deadline_unix_ms: None,
        payload: Payload::Fd { index: 0, length: payload.len() as u64 },
        checkpoint: None,
        progress: None,
    };
    outgoing.push(&job, vec![sealed_memfd("job-77", &payload).unwrap()]).unwrap();
    outgoing.send_to(&supervisor_end).unwrap();

    let mut replies = receive(&mut decoder, &supervisor_end, 2);
    let Message::Complete(Complete { job_id: 77, attempt: 2, result: Some(Payload::Fd { index: 0, length }) }) =
        replies[0].message
    else {
        panic!(
            "expected complete with a result fd, got {:?}; worker stderr:\n{}",
            replies[0].message,
            stderr_of(&mut child)
        );
    };
    let result_fd = replies[0].take_fd(0).unwrap();
    let mut expected = payload;
    expected.reverse();
    assert_eq!(read_payload(&result_fd, length, 16 << 20).unwrap(), expected);
    assert!(matches!(replies[1].message, Message::Goodbye(_)));
    assert_eq!(decoder.recv_from(&supervisor_end).unwrap(), 0, "EOF after goodbye");
    decoder.finish().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "worker failed: {status}\n{}", stderr_of(&mut child));
}

/// What the worker wrote to stderr, after making sure it has exited (so
/// reading cannot block on a worker that is waiting for us).
pub(crate) fn stderr_of(child: &mut std::process::Child) -> String {
    let _ = child.kill();
    let _ = child.wait();
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

/// The worker side, run only in the child process started above.
#[test]
#[ignore = "the worker process of a_worker_process_inherits_its_socket_and_exchanges_payload_fds"]
fn worker_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    // SAFETY: called once, first thing, in a process started with the
    // socket on this fd.
    let socket = unsafe { worker_socket_from_env() }.unwrap();
    let flags = rustix::io::fcntl_getfd(&socket).unwrap();
    assert!(flags.contains(FdFlags::CLOEXEC), "the worker hides its socket from its children");

    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES).receiving_as(Peer::Worker);
    let mut outgoing = SendBuffer::new();
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        min_protocol_version: MIN_PROTOCOL_VERSION,
        worker_name: "rust-test-worker".into(),
        job_kinds: vec!["reverse".into()],
        capabilities: Capabilities::ALL,
        window: 1,
        max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        sdk: None,
    };
    outgoing.push(&hello, Vec::new()).unwrap();
    outgoing.send_to(&socket).unwrap();

    let mut received = receive(&mut decoder, socket.as_fd(), 2);
    let Message::Welcome(welcome) = &received[0].message else {
        panic!("expected welcome, got {:?}", received[0].message);
    };
    outgoing.set_peer_max_frame_bytes(welcome.max_frame_bytes);
    let Message::Job(job) = received[1].message.clone() else {
        panic!("expected a job, got {:?}", received[1].message);
    };
    let Payload::Fd { index, length } = job.payload else {
        panic!("expected an fd payload");
    };
    let payload_fd = received[1].take_fd(index).unwrap();
    let flags = rustix::io::fcntl_getfd(&payload_fd).unwrap();
    assert!(flags.contains(FdFlags::CLOEXEC));
    let mut bytes = read_payload(&payload_fd, length, 16 << 20).unwrap();
    bytes.reverse();
    let complete = Complete {
        job_id: job.job_id,
        attempt: job.attempt,
        result: Some(Payload::Fd { index: 0, length: bytes.len() as u64 }),
    };
    outgoing.push(&complete, vec![sealed_memfd("result", &bytes).unwrap()]).unwrap();
    outgoing.push(&Goodbye { reason: None }, Vec::new()).unwrap();
    outgoing.send_to(&socket).unwrap();
}
