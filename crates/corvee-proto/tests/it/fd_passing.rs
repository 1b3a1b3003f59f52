//! File descriptors over a real socket pair: payload memfds arrive
//! readable, sealed and close-on-exec; fds are matched to their frames
//! however reads split the stream; fds nobody claims are closed; and the
//! non-blocking write path resumes where it stopped.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use corvee_proto::{
    map_payload, read_payload, recv_with_fds, sealed_memfd, send_with_fds, socket_pair, Complete, FrameDecoder,
    Heartbeat, Job, Message, Payload, PayloadError, Progress, Received, SendBuffer, DEFAULT_MAX_FRAME_BYTES,
};
use rustix::fs::SealFlags;
use rustix::io::FdFlags;

fn pattern(length: usize, seed: u8) -> Vec<u8> {
    (0..length).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn job_with_fd_payload(job_id: u64, length: u64) -> Job {
    Job {
        job_id,
        attempt: 1,
        queue: "default".into(),
        kind: "digest".into(),
        deadline_unix_ms: None,
        payload: Payload::Fd { index: 0, length },
        checkpoint: None,
        progress: None,
    }
}

fn progress(job_id: u64, done: u64) -> Progress {
    Progress { job_id, attempt: 1, done, total: None, message: None }
}

/// Receives until `count` messages have arrived (blocking socket).
pub(crate) fn receive(decoder: &mut FrameDecoder, socket: impl AsFd, count: usize) -> Vec<Received> {
    let mut received = Vec::new();
    while received.len() < count {
        while let Some(message) = decoder.next_message().unwrap() {
            received.push(message);
        }
        if received.len() < count {
            let read = decoder.recv_from(&socket).unwrap();
            assert!(read > 0, "EOF after {} of {count} messages", received.len());
        }
    }
    received
}

#[test]
fn a_sealed_memfd_payload_arrives_readable_sealed_and_close_on_exec() {
    let (supervisor_end, worker_end) = socket_pair().unwrap();
    let payload = pattern(3 << 20, 7);
    let memfd = sealed_memfd("corvee-test-payload", &payload).unwrap();
    let mut outgoing = SendBuffer::new();
    outgoing.push(&Heartbeat {}, Vec::new()).unwrap();
    outgoing.push(&job_with_fd_payload(42, payload.len() as u64), vec![memfd]).unwrap();
    outgoing.push(&progress(42, 1), Vec::new()).unwrap();
    outgoing.send_to(&supervisor_end).unwrap();
    assert!(outgoing.is_empty());

    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    let mut received = receive(&mut decoder, &worker_end, 3);
    assert_eq!(received[0].message, Message::Heartbeat(Heartbeat {}));
    assert_eq!(received[2].message, Message::Progress(progress(42, 1)));
    let job = &mut received[1];
    let Message::Job(Job { payload: Payload::Fd { index, length }, .. }) = job.message.clone() else {
        panic!("expected a job with an fd payload, got {:?}", job.message);
    };
    assert_eq!(job.fd_count(), 1);
    let fd = job.take_fd(index).expect("the payload fd");
    assert!(job.take_fd(index).is_none(), "an fd is taken once");

    let fd_flags = rustix::io::fcntl_getfd(&fd).unwrap();
    assert!(fd_flags.contains(FdFlags::CLOEXEC), "received fds are close-on-exec");
    let seals = rustix::fs::fcntl_get_seals(&fd).unwrap();
    assert!(seals.contains(SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL), "{seals:?}");
    assert_eq!(read_payload(&fd, length, 1 << 30).unwrap(), payload);
    assert_eq!(&*map_payload(&fd, length).unwrap(), &payload[..]);
    assert!(rustix::io::pwrite(&fd, b"x", 0).is_err(), "a sealed payload cannot be written");
    decoder.finish().unwrap();
}

#[test]
fn fds_are_matched_to_their_frames_however_the_stream_is_read() {
    let (sender_end, receiver_end) = socket_pair().unwrap();
    let rounds = 60u64;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut outgoing = SendBuffer::new();
            outgoing.set_peer_max_frame_bytes(DEFAULT_MAX_FRAME_BYTES);
            for round in 0..rounds {
                // Alternate frames with and without fds, and vary how many
                // fd-less frames sit between, so frames with fds start at
                // every kind of position in the writes.
                for done in 0..round % 4 {
                    outgoing.push(&progress(round, done), Vec::new()).unwrap();
                }
                let bytes = pattern(100 + round as usize, round as u8);
                let memfd = sealed_memfd("corvee-test", &bytes).unwrap();
                if round % 2 == 0 {
                    let job = job_with_fd_payload(round, bytes.len() as u64);
                    outgoing.push(&job, vec![memfd]).unwrap();
                } else {
                    let complete = Complete {
                        job_id: round,
                        attempt: 1,
                        result: Some(Payload::Fd { index: 0, length: bytes.len() as u64 }),
                    };
                    outgoing.push(&complete, vec![memfd]).unwrap();
                }
                if round % 3 == 0 {
                    outgoing.send_to(&sender_end).unwrap();
                }
            }
            outgoing.send_to(&sender_end).unwrap();
        });

        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let expected_messages: u64 = (0..rounds).map(|round| round % 4 + 1).sum();
        let received = receive(&mut decoder, &receiver_end, expected_messages as usize);
        let mut fd_messages = 0;
        for mut message in received {
            let (job_id, length) = match &message.message {
                Message::Job(job) => (job.job_id, job.payload.len()),
                Message::Complete(complete) => (complete.job_id, complete.result.as_ref().unwrap().len()),
                Message::Progress(_) => {
                    assert_eq!(message.fd_count(), 0);
                    continue;
                }
                other => panic!("unexpected {other:?}"),
            };
            let fd = message.take_fd(0).unwrap();
            let bytes = read_payload(&fd, length, 1 << 20).unwrap();
            assert_eq!(bytes, pattern(100 + job_id as usize, job_id as u8), "round {job_id}");
            fd_messages += 1;
        }
        assert_eq!(fd_messages, rounds);
        assert_eq!(decoder.queued_fds(), 0);
    });
}

/// Whether every copy of `probe`'s peer has been closed: a non-blocking
/// read sees EOF rather than "would block".
fn peer_closed(probe: &OwnedFd) -> bool {
    let mut byte = [0u8; 1];
    match rustix::net::recv(probe, &mut byte[..], rustix::net::RecvFlags::DONTWAIT) {
        Ok((0, _)) => true,
        Err(rustix::io::Errno::AGAIN) => false,
        other => panic!("unexpected probe result {other:?}"),
    }
}

#[test]
fn an_fd_no_frame_announces_is_closed_and_reported() {
    let (sender_end, receiver_end) = socket_pair().unwrap();
    let (probe, probe_peer) = socket_pair().unwrap();
    let mut frame = Vec::new();
    Message::Heartbeat(Heartbeat {}).encode_into(&mut frame, DEFAULT_MAX_FRAME_BYTES).unwrap();
    send_with_fds(&sender_end, &frame, &[probe_peer.as_fd()]).unwrap();
    drop(probe_peer);
    assert!(!peer_closed(&probe), "the fd is in flight, still open");

    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    decoder.recv_from(&receiver_end).unwrap();
    let error = decoder.next_frame().unwrap_err();
    assert_eq!(error.kind(), "unexpected_fds", "{error}");
    assert!(peer_closed(&probe), "the unexpected fd was closed");
}

#[test]
fn more_fds_than_a_frame_may_carry_are_cut_off_by_the_kernel_and_reported() {
    let (sender_end, receiver_end) = socket_pair().unwrap();
    let mut frame = Vec::new();
    Message::Heartbeat(Heartbeat {}).encode_into(&mut frame, DEFAULT_MAX_FRAME_BYTES).unwrap();
    let extra: Vec<OwnedFd> = (0..12).map(|_| OwnedFd::from(std::fs::File::open("/dev/null").unwrap())).collect();
    let borrowed: Vec<_> = extra.iter().map(AsFd::as_fd).collect();
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(12))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&borrowed)));
    rustix::net::sendmsg(&sender_end, &[io::IoSlice::new(&frame)], &mut control, rustix::net::SendFlags::empty())
        .unwrap();

    let mut buffer = [0u8; 64];
    let mut fds = Vec::new();
    let outcome = recv_with_fds(&receiver_end, &mut buffer, &mut fds).unwrap();
    assert!(outcome.fds_truncated);
    assert_eq!(fds.len(), corvee_proto::MAX_FDS_PER_FRAME);

    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    sendmsg_again(&sender_end, &frame, &borrowed);
    decoder.recv_from(&receiver_end).unwrap();
    assert_eq!(decoder.next_frame().unwrap_err().kind(), "fds_truncated");
}

fn sendmsg_again(socket: &OwnedFd, frame: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(12))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(fds)));
    rustix::net::sendmsg(socket, &[io::IoSlice::new(frame)], &mut control, rustix::net::SendFlags::empty()).unwrap();
}

#[test]
fn a_full_nonblocking_socket_reports_would_block_and_sending_resumes() {
    let (sender_end, receiver_end) = socket_pair().unwrap();
    rustix::io::ioctl_fionbio(&sender_end, true).unwrap();
    rustix::io::ioctl_fionbio(&receiver_end, true).unwrap();
    let mut outgoing = SendBuffer::new();
    outgoing.set_peer_max_frame_bytes(DEFAULT_MAX_FRAME_BYTES);
    let total = 20_000u64;
    let with_fd = 10_000u64;
    let payload = pattern(1000, 3);
    for done in 0..total {
        if done == with_fd {
            let memfd = sealed_memfd("corvee-test", &payload).unwrap();
            outgoing.push(&job_with_fd_payload(1, payload.len() as u64), vec![memfd]).unwrap();
        }
        outgoing.push(&progress(1, done), Vec::new()).unwrap();
    }

    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    let mut messages = Vec::new();
    let mut would_block = 0;
    loop {
        match outgoing.send_to(&sender_end) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => would_block += 1,
            Err(error) => panic!("send: {error}"),
        }
        match decoder.recv_from(&receiver_end) {
            Ok(read) => assert!(read > 0, "unexpected EOF"),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                assert!(!outgoing.is_empty(), "all sent and received");
            }
            Err(error) => panic!("recv: {error}"),
        }
        while let Some(message) = decoder.next_message().unwrap() {
            messages.push(message);
        }
        if outgoing.is_empty() && messages.len() as u64 == total + 1 {
            break;
        }
    }
    assert!(would_block > 0, "the socket buffer never filled; the test proves nothing");
    let mut next_done = 0;
    for mut message in messages {
        match &message.message {
            Message::Progress(progress) => {
                assert_eq!(progress.done, next_done);
                next_done += 1;
            }
            Message::Job(job) => {
                assert_eq!(next_done, with_fd, "the job arrives in its place");
                let length = job.payload.len();
                let fd = message.take_fd(0).unwrap();
                assert_eq!(read_payload(&fd, length, 1 << 20).unwrap(), payload);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(next_done, total);
}

#[test]
fn eof_from_a_closed_peer_reads_as_zero_and_ends_cleanly() {
    let (sender_end, receiver_end) = socket_pair().unwrap();
    let mut outgoing = SendBuffer::new();
    outgoing.push(&Heartbeat {}, Vec::new()).unwrap();
    outgoing.send_to(&sender_end).unwrap();
    drop(sender_end);
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    assert!(decoder.recv_from(&receiver_end).unwrap() > 0);
    assert!(decoder.next_message().unwrap().is_some());
    assert_eq!(decoder.recv_from(&receiver_end).unwrap(), 0);
    decoder.finish().unwrap();
}

#[test]
fn a_peer_that_has_gone_shows_as_a_broken_pipe_not_a_signal() {
    let (sender_end, receiver_end) = socket_pair().unwrap();
    drop(receiver_end);
    let mut outgoing = SendBuffer::new();
    outgoing.push(&Heartbeat {}, Vec::new()).unwrap();
    let error = outgoing.send_to(&sender_end).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
}

/// Checks that reading `length` bytes from `fd` fails with `expected`.
fn check_payload_refused(fd: impl AsFd, length: u64, expected: &str) {
    let error = read_payload(&fd, length, 1 << 20).unwrap_err();
    let text = error.to_string();
    assert!(text.contains(expected), "{text:?} should mention {expected:?}");
}

#[test]
fn payload_fds_are_checked_before_they_are_read() {
    let (socket, _peer) = socket_pair().unwrap();
    check_payload_refused(&socket, 1, "not a socket");
    let small = sealed_memfd("small", b"0123456789").unwrap();
    check_payload_refused(&small, 11, "holds 10 bytes but the message announces 11");
    check_payload_refused(&small, 2 << 20, "exceeds the limit");
    assert_eq!(read_payload(&small, 4, 100).unwrap(), b"0123");

    let unsealed = rustix::fs::memfd_create("unsealed", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::io::write(&unsealed, b"abc").unwrap();
    let error = map_payload(&unsealed, 3).unwrap_err();
    assert!(matches!(error, PayloadError::NotSealed { .. }), "{error}");
    // SAFETY: nothing writes to or truncates the memfd while it is mapped.
    let mapped = unsafe { corvee_proto::map_payload_unsealed(&unsealed, 3) }.unwrap();
    assert_eq!(&*mapped, b"abc");

    let empty = sealed_memfd("empty", b"").unwrap();
    assert!(map_payload(&empty, 0).unwrap().is_empty());
    assert!(read_payload(&empty, 0, 0).unwrap().is_empty());
}
