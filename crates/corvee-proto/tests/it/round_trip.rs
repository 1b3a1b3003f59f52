//! Property tests: every message type survives encode → split → decode
//! unchanged, and no byte sequence makes the decoder panic or grow past
//! its bound.

use corvee_proto::{
    Capabilities, Checkpoint, Complete, EncodeError, Fail, FrameDecoder, Goodbye, Heartbeat, Hello, Interrupt,
    Interrupted, Job, Log, LogLevel, Message, MessageType, Payload, Peek, PeekReply, PeekResult, Progress,
    ProgressState, Refusal, SendBuffer, Shutdown, Snooze, Welcome, HANDSHAKE_MAX_FRAME_BYTES, PROTOCOL_MAX_FRAME_BYTES,
    READ_CHUNK_BYTES,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::Union;

use crate::samples::{encode, placeholder_fds};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[a-z_]{30,300}"]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..40), vec(any::<u8>(), 250..400)]
}

fn attempt() -> impl Strategy<Value = u32> {
    1..=u32::MAX
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![bytes().prop_map(Payload::Inline), any::<u64>().prop_map(|length| Payload::Fd { index: 0, length }),]
}

fn progress_state() -> impl Strategy<Value = ProgressState> {
    (any::<u64>(), option::of(any::<u64>()), option::of(text())).prop_map(|(done, total, message)| ProgressState {
        done,
        total,
        message,
    })
}

fn capabilities() -> impl Strategy<Value = Capabilities> {
    any::<[bool; 4]>().prop_map(|[fd_payloads, checkpoints, peek, interrupt]| Capabilities {
        fd_payloads,
        checkpoints,
        peek,
        interrupt,
    })
}

fn max_frame_bytes() -> impl Strategy<Value = u32> {
    HANDSHAKE_MAX_FRAME_BYTES..=PROTOCOL_MAX_FRAME_BYTES
}

/// Every message type, with any field values the protocol allows.
fn message() -> impl Strategy<Value = Message> {
    let hello = (
        (any::<u16>(), any::<u16>()),
        "[a-z]{1,20}",
        vec(text(), 0..4),
        capabilities(),
        1..=u32::MAX,
        max_frame_bytes(),
        option::of(text()),
    )
        .prop_map(|((a, b), worker_name, job_kinds, capabilities, window, max_frame_bytes, sdk)| {
            Message::Hello(Hello {
                protocol_version: a.max(b),
                min_protocol_version: a.min(b),
                worker_name,
                job_kinds,
                capabilities,
                window,
                max_frame_bytes,
                sdk,
            })
        });
    let welcome = (any::<u16>(), any::<u64>(), 1..=u32::MAX, max_frame_bytes(), any::<[u32; 3]>(), capabilities())
        .prop_map(
            |(protocol_version, worker_id, window, max_frame_bytes, [heartbeat, threshold, grace], capabilities)| {
                Message::Welcome(Welcome {
                    protocol_version,
                    worker_id,
                    window,
                    max_frame_bytes,
                    heartbeat_interval_ms: heartbeat,
                    payload_fd_threshold_bytes: threshold,
                    interrupt_grace_ms: grace,
                    capabilities,
                })
            },
        );
    let refusal = (text(), text(), any::<u16>(), any::<u16>()).prop_map(
        |(reason, message, min_protocol_version, protocol_version)| {
            Message::Refusal(Refusal { reason, message, min_protocol_version, protocol_version })
        },
    );
    let shutdown = (any::<u64>(), text())
        .prop_map(|(deadline_unix_ms, reason)| Message::Shutdown(Shutdown { deadline_unix_ms, reason }));
    let goodbye = option::of(text()).prop_map(|reason| Message::Goodbye(Goodbye { reason }));
    let job = (
        (any::<u64>(), attempt(), text(), text()),
        option::of(any::<u64>()),
        payload(),
        option::of(bytes()),
        option::of(progress_state()),
    )
        .prop_map(|((job_id, attempt, queue, kind), deadline_unix_ms, payload, checkpoint, progress)| {
            Message::Job(Job { job_id, attempt, queue, kind, deadline_unix_ms, payload, checkpoint, progress })
        });
    let interrupt = (any::<u64>(), attempt(), text())
        .prop_map(|(job_id, attempt, reason)| Message::Interrupt(Interrupt { job_id, attempt, reason }));
    let peek = (any::<u64>(), bytes()).prop_map(|(request_id, query)| Message::Peek(Peek { request_id, query }));
    let progress = (any::<u64>(), attempt(), any::<u64>(), option::of(any::<u64>()), option::of(text())).prop_map(
        |(job_id, attempt, done, total, message)| Message::Progress(Progress { job_id, attempt, done, total, message }),
    );
    let checkpoint = (any::<u64>(), attempt(), bytes())
        .prop_map(|(job_id, attempt, checkpoint)| Message::Checkpoint(Checkpoint { job_id, attempt, checkpoint }));
    let log = (option::of((any::<u64>(), attempt())), prop::sample::select(LogLevel::ALL.to_vec()), text()).prop_map(
        |(job, level, text)| {
            Message::Log(Log {
                job_id: job.map(|(job_id, _)| job_id),
                attempt: job.map(|(_, attempt)| attempt),
                level,
                text,
            })
        },
    );
    let complete = (any::<u64>(), attempt(), option::of(payload()))
        .prop_map(|(job_id, attempt, result)| Message::Complete(Complete { job_id, attempt, result }));
    let fail = (any::<u64>(), attempt(), text(), any::<bool>())
        .prop_map(|(job_id, attempt, error, retryable)| Message::Fail(Fail { job_id, attempt, error, retryable }));
    let snooze = (any::<u64>(), attempt(), any::<u64>())
        .prop_map(|(job_id, attempt, delay_ms)| Message::Snooze(Snooze { job_id, attempt, delay_ms }));
    let interrupted = (any::<u64>(), attempt(), option::of(bytes()), option::of(progress_state())).prop_map(
        |(job_id, attempt, checkpoint, progress)| {
            Message::Interrupted(Interrupted { job_id, attempt, checkpoint, progress })
        },
    );
    let peek_reply = (any::<u64>(), prop_oneof![bytes().prop_map(PeekResult::Ok), text().prop_map(PeekResult::Error)])
        .prop_map(|(request_id, result)| Message::PeekReply(PeekReply { request_id, result }));
    Union::new(vec![
        hello.boxed(),
        welcome.boxed(),
        refusal.boxed(),
        Just(Message::Heartbeat(Heartbeat {})).boxed(),
        shutdown.boxed(),
        goodbye.boxed(),
        job.boxed(),
        interrupt.boxed(),
        peek.boxed(),
        progress.boxed(),
        checkpoint.boxed(),
        log.boxed(),
        complete.boxed(),
        fail.boxed(),
        snooze.boxed(),
        interrupted.boxed(),
        peek_reply.boxed(),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_message_round_trips_through_a_frame_split_anywhere(
        message in message(),
        cuts in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
    ) {
        let bytes = encode(&message);
        let (a, b) = (cuts.0.index(bytes.len() + 1), cuts.1.index(bytes.len() + 1));
        let (first, second) = (a.min(b), a.max(b));
        let mut decoder = FrameDecoder::new(PROTOCOL_MAX_FRAME_BYTES);
        let mut decoded = Vec::new();
        let mut fds = Some(placeholder_fds(&message));
        for (start, end) in [(0, first), (first, second), (second, bytes.len())] {
            decoder.feed(&bytes[start..end]);
            if end > start {
                // Fds arrive with the frame's first byte.
                decoder.feed_fds(fds.take().into_iter().flatten());
            }
            while let Some(received) = decoder.next_message().unwrap() {
                prop_assert_eq!(received.fd_count(), message.fd_indexes().len());
                decoded.push(received.message);
            }
        }
        decoder.finish().unwrap();
        prop_assert_eq!(decoded, vec![message]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder_nor_grow_it_past_its_bound(
        chunks in vec(vec(any::<u8>(), 0..200), 0..20),
        valid_prefix in any::<bool>(),
    ) {
        let mut decoder = FrameDecoder::new(HANDSHAKE_MAX_FRAME_BYTES);
        if valid_prefix {
            // Start like a real frame so the fuzzing gets past the magic.
            decoder.feed(b"CV");
        }
        for chunk in chunks {
            let room = decoder.read_buffer();
            let count = chunk.len().min(room.len());
            room[..count].copy_from_slice(&chunk[..count]);
            decoder.commit_read(count);
            let outcome = loop {
                match decoder.next_message() {
                    Ok(Some(_)) => continue,
                    Ok(None) => break Ok(()),
                    Err(error) => break Err(error),
                }
            };
            prop_assert!(
                decoder.buffer_capacity() <= HANDSHAKE_MAX_FRAME_BYTES as usize + 2 * READ_CHUNK_BYTES,
                "buffer of {} bytes", decoder.buffer_capacity()
            );
            if outcome.is_err() {
                break;
            }
        }
    }
}

#[test]
fn the_encoder_refuses_messages_that_break_the_rules() {
    let mut outgoing = SendBuffer::new();
    let check = |result: Result<(), EncodeError>, mentions: &str| {
        let error = result.expect_err("must be refused");
        assert!(error.to_string().contains(mentions), "{error} should mention {mentions:?}");
    };
    let fail = Fail { job_id: 1, attempt: 0, error: "x".into(), retryable: true };
    check(outgoing.push(&fail, Vec::new()), "attempt is 0");
    let log = Log { job_id: Some(1), attempt: None, level: LogLevel::Info, text: "x".into() };
    check(outgoing.push(&log, Vec::new()), "job_id is present without attempt");
    let job = Job {
        job_id: 1,
        attempt: 1,
        queue: "q".into(),
        kind: "k".into(),
        deadline_unix_ms: None,
        payload: Payload::Fd { index: 1, length: 10 },
        checkpoint: None,
        progress: None,
    };
    check(outgoing.push(&job, Vec::new()), "refers to 1 file descriptors but 0");
    let fd = std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    check(outgoing.push(&job, vec![fd]), "fd indexes [1] must be 0..n");
    let hello = Hello {
        protocol_version: 1,
        min_protocol_version: 1,
        worker_name: "w".into(),
        job_kinds: Vec::new(),
        capabilities: Capabilities::default(),
        window: 0,
        max_frame_bytes: 1 << 20,
        sdk: None,
    };
    check(outgoing.push(&hello, Vec::new()), "window is 0");
    let hello = Hello { window: 1, max_frame_bytes: 1000, ..hello };
    check(outgoing.push(&hello, Vec::new()), "max_frame_bytes 1000 is outside");
    assert!(outgoing.is_empty(), "nothing was encoded");
    assert_eq!(MessageType::Fail.name(), "fail");
}
