//! The Python SDK's wire layer, driven from here so that `cargo nextest`
//! covers it: its unittest suite (`sdk/python/tests/wire`, which reads the
//! same golden vectors), and a real Python worker process speaking the
//! protocol with this crate's codec, fd payloads both ways. (The runtime's
//! own tests are run by corvee-worker's.)

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corvee_proto::{
    install_worker_fd, read_payload, sealed_memfd, socket_pair, Capabilities, FrameDecoder, Job, LogLevel, Message,
    Payload, Peer, SendBuffer, Shutdown, Welcome, DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION, WORKER_FD, WORKER_FD_ENV,
};
use rustix::io::FdFlags;

use crate::fd_passing::receive;
use crate::worker_process::stderr_of;

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python")
}

fn python() -> Command {
    let mut command = Command::new("python3");
    command.current_dir(sdk_dir()).env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

#[test]
fn the_python_wire_layer_unit_tests_pass() {
    let output = python()
        .args(["-m", "unittest", "discover", "-s", "tests/wire", "-t", "."])
        .stdin(Stdio::null())
        .output()
        .expect("python3 (3.11 or newer) is needed to test the Python SDK");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Python SDK tests failed:\n{report}");
    let ran: usize = report
        .lines()
        .find_map(|line| line.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no 'Ran N tests' line in:\n{report}"));
    assert!(ran >= 30, "only {ran} Python tests ran:\n{report}");
}

#[test]
fn a_python_worker_process_speaks_the_protocol_with_the_rust_codec() {
    let (supervisor_end, worker_end) = socket_pair().unwrap();
    rustix::net::sockopt::set_socket_timeout(
        &supervisor_end,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(30)),
    )
    .unwrap();
    let mut command = python();
    command
        .arg("tests/echo_worker.py")
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
    let mut child = command.spawn().expect("python3 (3.11 or newer) is needed to test the Python SDK");
    drop(worker_end);

    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES).receiving_as(Peer::Supervisor);
    let mut outgoing = SendBuffer::new();
    let hello = receive(&mut decoder, &supervisor_end, 1).remove(0);
    let Message::Hello(hello) = hello.message else {
        panic!("expected hello, got {:?}", hello.message);
    };
    assert_eq!(hello.worker_name, "python-echo");
    assert!(hello.sdk.as_deref().unwrap().starts_with("corvee-worker-python"));
    outgoing.set_peer_max_frame_bytes(hello.max_frame_bytes);
    let welcome = Welcome {
        protocol_version: PROTOCOL_VERSION,
        worker_id: 3,
        window: hello.window,
        max_frame_bytes: 4 << 20,
        heartbeat_interval_ms: 0,
        payload_fd_threshold_bytes: 64 << 10,
        interrupt_grace_ms: 1000,
        capabilities: hello.capabilities.intersection(Capabilities::ALL),
    };
    outgoing.push(&welcome, Vec::new()).unwrap();

    // Two jobs pipelined before any reply: one inline, one as a memfd.
    let inline: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    let large: Vec<u8> = (0..(8 << 20) as u32).map(|i| (i % 253) as u8).collect();
    let job = |job_id, payload| Job {
        job_id,
        attempt: 1,
        queue: "default".into(),
        kind: "reverse".into(),
        deadline_unix_ms: None,
        payload,
        checkpoint: None,
        progress: None,
    };
    outgoing.push(&job(10, Payload::Inline(inline.clone())), Vec::new()).unwrap();
    let large_payload = Payload::Fd { index: 0, length: large.len() as u64 };
    outgoing.push(&job(11, large_payload), vec![sealed_memfd("job-11", &large).unwrap()]).unwrap();
    outgoing.send_to(&supervisor_end).unwrap();

    // Each job gets progress, checkpoint, log and then its terminal reply;
    // replies are matched by (job id, attempt), not by order.
    let mut results: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut seen: HashMap<u64, Vec<&str>> = HashMap::new();
    for mut received in receive(&mut decoder, &supervisor_end, 8) {
        let (job_id, attempt) = received.message.job_attempt().expect("job-scoped reply");
        assert_eq!(attempt, 1);
        let kind = received.message.message_type().name();
        seen.entry(job_id).or_default().push(kind);
        match received.message.clone() {
            Message::Log(log) => assert_eq!(log.level, LogLevel::Info),
            Message::Complete(complete) => {
                let bytes = match complete.result.expect("a result") {
                    Payload::Inline(bytes) => bytes,
                    Payload::Fd { index, length } => {
                        let fd = received.take_fd(index).unwrap();
                        let flags = rustix::io::fcntl_getfd(&fd).unwrap();
                        assert!(flags.contains(FdFlags::CLOEXEC));
                        read_payload(&fd, length, 16 << 20).unwrap()
                    }
                };
                results.insert(job_id, bytes);
            }
            Message::Progress(_) | Message::Checkpoint(_) => {}
            other => panic!("unexpected {other:?}; worker stderr:\n{}", stderr_of(&mut child)),
        }
    }
    for job_id in [10, 11] {
        assert_eq!(seen[&job_id], ["progress", "checkpoint", "log", "complete"]);
    }
    let reversed = |bytes: &[u8]| bytes.iter().rev().copied().collect::<Vec<u8>>();
    assert_eq!(results[&10], reversed(&inline));
    assert!(results[&11] == reversed(&large), "the 8 MiB result differs");

    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let shutdown = Shutdown { deadline_unix_ms: now_ms + 10_000, reason: "test_over".into() };
    outgoing.push(&shutdown, Vec::new()).unwrap();
    outgoing.send_to(&supervisor_end).unwrap();
    let goodbye = receive(&mut decoder, &supervisor_end, 1).remove(0);
    assert!(matches!(goodbye.message, Message::Goodbye(_)), "{:?}", goodbye.message);
    assert_eq!(decoder.recv_from(&supervisor_end).unwrap(), 0, "EOF after goodbye");
    decoder.finish().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "python worker: {status}\n{}", stderr_of(&mut child));
}
