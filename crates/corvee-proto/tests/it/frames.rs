//! The frame decoder and encoder without sockets: splitting, batching, the
//! size limit checked before allocation, truncation at EOF, garbage, and
//! forward compatibility (unknown keys).

use std::os::fd::OwnedFd;

use corvee_proto::{
    DecodeError, EncodeError, FrameDecoder, Heartbeat, Message, MessageType, Peer, Progress, SendBuffer,
    DEFAULT_MAX_FRAME_BYTES, HANDSHAKE_MAX_FRAME_BYTES, HEADER_BYTES, PROTOCOL_MAX_FRAME_BYTES, READ_CHUNK_BYTES,
};

use crate::samples::{encode, frame, header, placeholder_fds, samples};

fn new_decoder() -> FrameDecoder {
    FrameDecoder::new(PROTOCOL_MAX_FRAME_BYTES)
}

/// Everything the decoder yields for `bytes` fed at once, then EOF.
fn decode_all(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<Vec<Message>, DecodeError> {
    let mut decoder = new_decoder();
    decoder.feed(bytes);
    decoder.feed_fds(fds);
    let mut messages = Vec::new();
    while let Some(received) = decoder.next_message()? {
        messages.push(received.message);
    }
    decoder.finish()?;
    Ok(messages)
}

#[test]
fn every_sample_split_at_every_offset_decodes_to_exactly_one_message() {
    for sample in samples() {
        let bytes = encode(&sample.message);
        for split in 0..=bytes.len() {
            // Fds arrive with a frame's first byte, so with the first
            // non-empty piece.
            let mut decoder = new_decoder();
            decoder.feed(&bytes[..split]);
            if split > 0 {
                decoder.feed_fds(placeholder_fds(&sample.message));
            }
            let mut messages = Vec::new();
            while let Some(received) = decoder.next_message().unwrap() {
                messages.push(received.message);
            }
            if split < bytes.len() {
                assert!(messages.is_empty(), "{}: a message before all bytes", sample.name);
            }
            decoder.feed(&bytes[split..]);
            if split == 0 {
                decoder.feed_fds(placeholder_fds(&sample.message));
            }
            while let Some(received) = decoder.next_message().unwrap() {
                messages.push(received.message);
            }
            decoder.finish().unwrap();
            assert_eq!(messages, std::slice::from_ref(&sample.message), "{} split at {split}", sample.name);
        }
    }
}

#[test]
fn a_message_fed_one_byte_at_a_time_through_the_read_buffer_decodes_once() {
    for sample in samples() {
        let bytes = encode(&sample.message);
        let mut decoder = new_decoder();
        let mut messages = Vec::new();
        for (offset, &byte) in bytes.iter().enumerate() {
            let room = decoder.read_buffer();
            room[0] = byte;
            decoder.commit_read(1);
            if offset == 0 {
                decoder.feed_fds(placeholder_fds(&sample.message));
            }
            while let Some(received) = decoder.next_message().unwrap() {
                messages.push(received.message);
            }
        }
        decoder.finish().unwrap();
        assert_eq!(messages, [sample.message], "{}", sample.name);
    }
}

#[test]
fn all_samples_in_one_buffer_decode_in_order() {
    let mut bytes = Vec::new();
    let mut fds = Vec::new();
    let mut expected = Vec::new();
    for sample in samples() {
        bytes.extend(encode(&sample.message));
        fds.extend(placeholder_fds(&sample.message));
        expected.push(sample.message);
    }
    assert_eq!(decode_all(&bytes, fds).unwrap(), expected);
}

#[test]
fn two_messages_in_one_buffer_decode_to_two() {
    let first = Message::Heartbeat(Heartbeat {});
    let second = Message::Progress(Progress { job_id: 5, attempt: 1, done: 1, total: None, message: None });
    let mut bytes = encode(&first);
    bytes.extend(encode(&second));
    assert_eq!(decode_all(&bytes, Vec::new()).unwrap(), [first, second]);
}

#[test]
fn a_header_announcing_4_gib_is_rejected_without_allocating() {
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    decoder.feed(&header(MessageType::Job.code(), u32::MAX, 0, 0));
    // Asking for room to read must not reserve the announced size either.
    let room = decoder.read_buffer().len();
    assert!(room <= 2 * READ_CHUNK_BYTES, "read buffer of {room} bytes");
    let error = decoder.next_frame().unwrap_err();
    match &error {
        DecodeError::FrameTooLarge { code, frame_bytes, max_frame_bytes } => {
            assert_eq!(*code, MessageType::Job.code());
            assert_eq!(*frame_bytes, u64::from(u32::MAX) + HEADER_BYTES as u64);
            assert_eq!(*max_frame_bytes, DEFAULT_MAX_FRAME_BYTES);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains("4294967307 bytes") && text.contains("1048576"), "{text}");
    assert!(
        decoder.buffer_capacity() <= 2 * READ_CHUNK_BYTES,
        "the decoder grew its buffer to {} bytes",
        decoder.buffer_capacity()
    );
    assert!(matches!(decoder.next_frame(), Err(DecodeError::Poisoned { .. })));
}

#[test]
fn the_size_limit_counts_the_header_and_is_inclusive() {
    let limit = HANDSHAKE_MAX_FRAME_BYTES;
    let body_at_limit = limit - HEADER_BYTES as u32;
    let mut decoder = FrameDecoder::new(limit);
    decoder.feed(&header(MessageType::Heartbeat.code(), body_at_limit, 0, 0));
    assert!(decoder.next_frame().unwrap().is_none(), "waits for the body");

    let mut decoder = FrameDecoder::new(limit);
    decoder.feed(&header(MessageType::Heartbeat.code(), body_at_limit + 1, 0, 0));
    assert_eq!(decoder.next_frame().unwrap_err().kind(), "frame_too_large");
}

#[test]
fn the_encoder_refuses_frames_over_the_peer_limit_and_leaves_the_buffer_as_it_was() {
    let big =
        corvee_proto::Checkpoint { job_id: 1, attempt: 1, checkpoint: vec![0; HANDSHAKE_MAX_FRAME_BYTES as usize] };
    let mut outgoing = SendBuffer::new();
    outgoing.push(&Heartbeat {}, Vec::new()).unwrap();
    let before = outgoing.unsent().to_vec();
    let error = outgoing.push(&big, Vec::new()).unwrap_err();
    assert!(matches!(error, EncodeError::FrameTooLarge { .. }), "{error}");
    assert_eq!(outgoing.unsent(), before);
    // After the handshake raises the peer's limit the same message fits.
    outgoing.set_peer_max_frame_bytes(DEFAULT_MAX_FRAME_BYTES);
    outgoing.push(&big, Vec::new()).unwrap();
}

#[test]
fn the_send_buffer_reuses_its_memory_once_drained() {
    let progress = Progress { job_id: 1, attempt: 1, done: 10, total: Some(100), message: None };
    let mut outgoing = SendBuffer::new();
    for _ in 0..64 {
        outgoing.push(&progress, Vec::new()).unwrap();
    }
    let capacity = outgoing.capacity();
    for _ in 0..1000 {
        outgoing.consume(outgoing.pending_bytes());
        for _ in 0..64 {
            outgoing.push(&progress, Vec::new()).unwrap();
        }
    }
    assert_eq!(outgoing.capacity(), capacity);
}

#[test]
fn the_send_buffer_refuses_frames_beyond_its_limit() {
    let mut outgoing = SendBuffer::with_limit(100);
    while outgoing.pending_bytes() < 100 {
        outgoing.push(&Heartbeat {}, Vec::new()).unwrap();
    }
    let error = outgoing.push(&Heartbeat {}, Vec::new()).unwrap_err();
    assert!(matches!(error, EncodeError::SendBufferFull { .. }), "{error}");
}

#[test]
fn a_frame_cut_short_by_eof_is_an_error() {
    let bytes = encode(&samples()[0].message);
    let mut decoder = new_decoder();
    decoder.feed(&bytes[..bytes.len() - 1]);
    assert!(decoder.next_frame().unwrap().is_none());
    match decoder.finish().unwrap_err() {
        DecodeError::TruncatedFrame { buffered, expected } => {
            assert_eq!(buffered, bytes.len() - 1);
            assert_eq!(expected, Some(bytes.len() as u64));
        }
        other => panic!("expected TruncatedFrame, got {other:?}"),
    }

    let mut decoder = new_decoder();
    decoder.feed(&bytes[..5]);
    assert!(decoder.next_frame().unwrap().is_none());
    let error = decoder.finish().unwrap_err();
    assert!(matches!(error, DecodeError::TruncatedFrame { buffered: 5, expected: None }), "{error:?}");
    assert!(error.to_string().contains("5 bytes of a header"), "{error}");
}

#[test]
fn a_clean_eof_between_frames_is_fine() {
    let mut decoder = new_decoder();
    decoder.feed(&encode(&Message::Heartbeat(Heartbeat {})));
    assert!(decoder.next_frame().unwrap().is_some());
    assert!(decoder.next_frame().unwrap().is_none());
    decoder.finish().unwrap();
}

/// Feeds `bytes` (and `fd_count` placeholder fds), decodes until an error,
/// and checks its kind and that its message mentions `mentions`.
fn check_rejected(bytes: &[u8], fd_count: usize, kind: &str, mentions: &str) {
    let fds = (0..fd_count).map(|_| OwnedFd::from(std::fs::File::open("/dev/null").unwrap())).collect();
    let error = decode_all(bytes, fds).expect_err("garbage must be rejected");
    assert_eq!(error.kind(), kind, "{error}");
    let text = error.to_string();
    assert!(text.contains(mentions), "{text:?} should mention {mentions:?}");
}

#[test]
fn garbage_is_rejected_with_a_named_error() {
    let heartbeat_body = [0x80];
    let progress_without_attempt =
        [0x82, 0xa6, b'j', b'o', b'b', b'_', b'i', b'd', 0x01, 0xa4, b'd', b'o', b'n', b'e', 0x00];
    // A checkpoint whose bytes are written as str instead of bin.
    let mut checkpoint_as_str = vec![0x83];
    for (key, value) in [("job_id", 1u8), ("attempt", 1u8)] {
        checkpoint_as_str.push(0xa0 | key.len() as u8);
        checkpoint_as_str.extend_from_slice(key.as_bytes());
        checkpoint_as_str.push(value);
    }
    checkpoint_as_str.extend_from_slice(&[0xaa]);
    checkpoint_as_str.extend_from_slice(b"checkpoint");
    checkpoint_as_str.extend_from_slice(&[0xa2, b'h', b'i']);
    let fail_attempt_zero = encode_unchecked_fail_with_attempt_zero();

    check_rejected(b"hello world, I am a log line\n", 0, "bad_magic", "68 65");
    check_rejected(&frame(0x0042, &heartbeat_body), 0, "unknown_message_type", "0x0042");
    check_rejected(&frame(0x0100, &heartbeat_body), 0, "reserved_message_type", "event");
    check_rejected(&frame(0x01ff, &heartbeat_body), 0, "reserved_message_type", "0x01ff");
    check_rejected(&frame(0x0004, &[0x91, 0x01]), 0, "malformed_body", "must be a map");
    check_rejected(&frame(0x0004, &[0x80, 0xc0]), 0, "malformed_body", "1 bytes follow");
    check_rejected(&frame(0x0004, &[0x81, 0x01, 0x02]), 0, "malformed_body", "keys must be strings");
    check_rejected(&frame(0x0004, &[0x81, 0xa1, b'x', 0xd4, 0x01, 0x02]), 0, "malformed_body", "ext");
    check_rejected(&frame(0x0004, &[0x81, 0xa1, b'x', 0xc1]), 0, "malformed_body", "0xc1");
    check_rejected(&frame(0x0004, &[0x81, 0xa1, b'x', 0xdd, 0xff, 0xff, 0xff, 0xff]), 0, "malformed_body", "needs");
    check_rejected(&frame(0x0004, &deep_body(40)), 0, "malformed_body", "deeper than 32");
    check_rejected(
        &frame(0x0004, &[0x82, 0xa1, b'x', 0x01, 0xd9, 0x01, b'x', 0x02]),
        0,
        "malformed_body",
        "the key \"x\" appears twice",
    );
    check_rejected(&frame(0x0004, &[0x81, 0xa1, b'x', 0xa1, 0xff]), 0, "malformed_body", "not UTF-8");
    check_rejected(&frame(0x0020, &progress_without_attempt), 0, "bad_body", "progress (0x0020)");
    check_rejected(&frame(0x0020, &progress_without_attempt), 0, "bad_body", "attempt");
    check_rejected(&frame(0x0021, &checkpoint_as_str), 0, "bad_body", "bin");
    check_rejected(&fail_attempt_zero, 0, "invalid_message", "attempt is 0");
    let mut flagged = header(0x0004, 1, 0x01, 0);
    flagged.push(0x80);
    check_rejected(&flagged, 0, "unknown_critical_flags", "0x01");
    let mut reserved = header(0x0004, 1, 0, 0);
    reserved[10] = 1;
    reserved.push(0x80);
    check_rejected(&reserved, 0, "reserved_header_bytes", "0x0001");
    let mut too_many_fds = header(0x0010, 1, 0, 9);
    too_many_fds.push(0x80);
    check_rejected(&too_many_fds, 0, "too_many_fds", "9 file descriptors");
}

/// A map nested `depth` levels deep under the key "x".
fn deep_body(depth: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..depth {
        body.extend_from_slice(&[0x81, 0xa1, b'x']);
    }
    body.push(0xc0);
    body
}

fn encode_unchecked_fail_with_attempt_zero() -> Vec<u8> {
    let mut body = vec![0x84];
    for (key, value) in [("job_id", &[0x01][..]), ("attempt", &[0x00]), ("retryable", &[0xc2])] {
        body.push(0xa0 | key.len() as u8);
        body.extend_from_slice(key.as_bytes());
        body.extend_from_slice(value);
    }
    body.extend_from_slice(&[0xa5]);
    body.extend_from_slice(b"error");
    body.extend_from_slice(&[0xa4]);
    body.extend_from_slice(b"oops");
    frame(MessageType::Fail.code(), &body)
}

#[test]
fn fds_that_do_not_match_their_frames_are_rejected() {
    // A frame announcing one fd that arrived without it.
    let job_with_fd = samples().into_iter().find(|sample| sample.name == "job-payload-fd").unwrap().message;
    check_rejected(&encode(&job_with_fd), 0, "missing_fds", "1 file descriptors");
    // An fd with a frame that announces none.
    check_rejected(&encode(&Message::Heartbeat(Heartbeat {})), 1, "unexpected_fds", "1 file");
    // An fd that arrived with no frame at all.
    check_rejected(&[], 1, "unexpected_fds", "no frame");
    // A frame with one fd whose body refers to none.
    let mut bytes = encode(&Message::Heartbeat(Heartbeat {}));
    bytes[9] = 1;
    check_rejected(&bytes, 1, "fd_references", "refers to fd indexes []");
}

#[test]
fn the_decoder_keeps_at_most_its_fd_queue() {
    let mut decoder = new_decoder();
    decoder.feed_fds((0..40).map(|_| OwnedFd::from(std::fs::File::open("/dev/null").unwrap())));
    assert_eq!(decoder.queued_fds(), corvee_proto::MAX_QUEUED_FDS);
    assert_eq!(decoder.next_frame().unwrap_err().kind(), "unexpected_fds");
    assert_eq!(decoder.queued_fds(), 0, "fds closed after the error");
}

#[test]
fn a_receiver_rejects_messages_of_its_own_side() {
    let mut decoder = new_decoder().receiving_as(Peer::Worker);
    decoder.feed(&encode(&Message::Heartbeat(Heartbeat {})));
    let error = decoder.next_frame().unwrap_err();
    assert_eq!(error.kind(), "wrong_direction");
    assert!(error.to_string().contains("heartbeat (0x0004) is sent by the worker"), "{error}");

    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES).receiving_as(Peer::Supervisor);
    decoder.feed(&encode(&Message::Heartbeat(Heartbeat {})));
    assert!(decoder.next_message().unwrap().is_some());
}

#[test]
fn unknown_keys_are_ignored_wherever_they_appear() {
    // progress {job_id: 5, future: {nested: [1, "two", bin 03, 1.5, nil, true]},
    //           attempt: 2, done: 7, another: -3}
    let mut body = vec![0x85];
    body.extend_from_slice(&[0xa6, b'j', b'o', b'b', b'_', b'i', b'd', 0x05]);
    body.extend_from_slice(&[0xa6, b'f', b'u', b't', b'u', b'r', b'e']);
    body.extend_from_slice(&[0x81, 0xa6, b'n', b'e', b's', b't', b'e', b'd']);
    body.extend_from_slice(&[0x96, 0x01, 0xa3, b't', b'w', b'o', 0xc4, 0x01, 0x03]);
    body.extend_from_slice(&[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xc0, 0xc3]);
    body.extend_from_slice(&[0xa7, b'a', b't', b't', b'e', b'm', b'p', b't', 0x02]);
    body.extend_from_slice(&[0xa4, b'd', b'o', b'n', b'e', 0x07]);
    body.extend_from_slice(&[0xa7, b'a', b'n', b'o', b't', b'h', b'e', b'r', 0xfd]);
    let decoded = decode_all(&frame(MessageType::Progress.code(), &body), Vec::new()).unwrap();
    assert_eq!(decoded, [Message::Progress(Progress { job_id: 5, attempt: 2, done: 7, total: None, message: None })]);
}

#[test]
fn nil_is_read_as_an_absent_optional_field() {
    // progress {job_id: 1, attempt: 1, done: 0, total: nil, message: nil}
    let mut body = vec![0x85];
    for (key, value) in [("job_id", 0x01u8), ("attempt", 0x01), ("done", 0x00), ("total", 0xc0), ("message", 0xc0)] {
        body.push(0xa0 | key.len() as u8);
        body.extend_from_slice(key.as_bytes());
        body.push(value);
    }
    let decoded = decode_all(&frame(MessageType::Progress.code(), &body), Vec::new()).unwrap();
    assert_eq!(decoded, [Message::Progress(Progress { job_id: 1, attempt: 1, done: 0, total: None, message: None })]);
}

#[test]
fn message_types_name_themselves_and_their_sender() {
    for message_type in MessageType::ALL {
        assert_eq!(MessageType::from_code(message_type.code()).unwrap(), message_type);
        assert_eq!(MessageType::from_name(message_type.name()), Some(message_type));
    }
    assert_eq!(MessageType::Job.sender(), Peer::Supervisor);
    assert_eq!(MessageType::Complete.sender(), Peer::Worker);
    assert!(MessageType::Interrupted.is_terminal_reply());
    assert!(!MessageType::Progress.is_terminal_reply());
}

#[test]
fn duplicate_keys_are_found_in_maps_of_any_size() {
    // heartbeat {k0: 0, ..., k19: 0} under an unknown key, with and
    // without "k3" repeated at the end.
    let map = |repeat: bool| {
        let count = 20 + usize::from(repeat);
        let mut body = vec![0x81, 0xa1, b'x', 0xde, 0x00, count as u8];
        for index in (0..20).chain(repeat.then_some(3)) {
            let key = format!("k{index}");
            body.push(0xa0 | key.len() as u8);
            body.extend_from_slice(key.as_bytes());
            body.push(0x00);
        }
        frame(MessageType::Heartbeat.code(), &body)
    };
    assert_eq!(decode_all(&map(false), Vec::new()).unwrap().len(), 1);
    check_rejected(&map(true), 0, "malformed_body", "the key \"k3\" appears twice");
}
