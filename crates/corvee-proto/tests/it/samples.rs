//! Representative messages, one or more per type, shared by the frame
//! tests and the golden vectors. Values are picked to exercise every
//! MessagePack width a peer must handle: fixint to uint64, fixstr to str8,
//! bin8 and bin16, nested maps, arrays and booleans.

use std::os::fd::OwnedFd;

use corvee_proto::{
    Capabilities, Checkpoint, Complete, Fail, Goodbye, Heartbeat, Hello, Interrupt, Interrupted, Job, Log, LogLevel,
    Message, Payload, Peek, PeekReply, PeekResult, Progress, ProgressState, Refusal, Shutdown, Snooze, Welcome,
};

/// One representative message and the file name of its golden vector.
pub struct Sample {
    pub name: &'static str,
    pub message: Message,
}

/// 300 bytes, so its length needs bin16.
fn long_bytes() -> Vec<u8> {
    (0..300u32).map(|i| (i * 7 % 256) as u8).collect()
}

pub fn samples() -> Vec<Sample> {
    let job_id = 1_099_511_627_781; // above u32: encoded as uint64
    let deadline = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    vec![
        Sample {
            name: "hello",
            message: Message::Hello(Hello {
                protocol_version: 1,
                min_protocol_version: 1,
                worker_name: "thumbnailer".into(),
                job_kinds: vec!["resize_image".into(), "make_thumbnail".into()],
                capabilities: Capabilities { fd_payloads: true, checkpoints: true, peek: false, interrupt: true },
                window: 64,
                max_frame_bytes: 1 << 20,
                sdk: Some("corvee-worker-python 0.1.0".into()),
            }),
        },
        Sample {
            name: "welcome",
            message: Message::Welcome(Welcome {
                protocol_version: 1,
                worker_id: 7,
                window: 32,
                max_frame_bytes: 4 << 20,
                heartbeat_interval_ms: 5_000,
                payload_fd_threshold_bytes: 64 << 10,
                interrupt_grace_ms: 10_000,
                capabilities: Capabilities { fd_payloads: true, checkpoints: true, peek: false, interrupt: true },
            }),
        },
        Sample {
            name: "refusal-version-mismatch",
            message: Message::Refusal(Refusal {
                reason: "version_mismatch".into(),
                message: "the worker speaks protocol versions 2..=3 but this supervisor speaks \
                          1..=1; upgrade corvee or use an older SDK"
                    .into(),
                min_protocol_version: 1,
                protocol_version: 1,
            }),
        },
        Sample { name: "heartbeat", message: Message::Heartbeat(Heartbeat {}) },
        Sample {
            name: "shutdown",
            message: Message::Shutdown(Shutdown { deadline_unix_ms: deadline, reason: "daemon_stopping".into() }),
        },
        Sample { name: "goodbye", message: Message::Goodbye(Goodbye { reason: Some("shutdown requested".into()) }) },
        Sample {
            name: "job-inline",
            message: Message::Job(Job {
                job_id,
                attempt: 3,
                queue: "images".into(),
                kind: "resize_image".into(),
                deadline_unix_ms: Some(deadline),
                payload: Payload::Inline(long_bytes()),
                checkpoint: Some(b"row=1200".to_vec()),
                progress: Some(ProgressState { done: 1200, total: Some(5000), message: Some("resizing rows".into()) }),
            }),
        },
        Sample {
            name: "job-minimal",
            message: Message::Job(Job {
                job_id: 1,
                attempt: 1,
                queue: "default".into(),
                kind: "noop".into(),
                deadline_unix_ms: None,
                payload: Payload::Inline(Vec::new()),
                checkpoint: None,
                progress: None,
            }),
        },
        Sample {
            name: "job-payload-fd",
            message: Message::Job(Job {
                job_id: 2,
                attempt: 1,
                queue: "videos".into(),
                kind: "transcode".into(),
                deadline_unix_ms: Some(deadline),
                payload: Payload::Fd { index: 0, length: 67_108_864 },
                checkpoint: None,
                progress: None,
            }),
        },
        Sample {
            name: "interrupt",
            message: Message::Interrupt(Interrupt { job_id, attempt: 3, reason: "cancelled".into() }),
        },
        Sample { name: "peek", message: Message::Peek(Peek { request_id: 9, query: b"count".to_vec() }) },
        Sample {
            name: "progress",
            message: Message::Progress(Progress {
                job_id,
                attempt: 3,
                done: 2500,
                total: Some(5000),
                message: Some("half way through the rows of the image".into()),
            }),
        },
        Sample {
            name: "checkpoint",
            message: Message::Checkpoint(Checkpoint { job_id, attempt: 3, checkpoint: vec![0x00, 0xff, 0x10, 0x80] }),
        },
        Sample {
            name: "log-job",
            message: Message::Log(Log {
                job_id: Some(job_id),
                attempt: Some(3),
                level: LogLevel::Warn,
                text: "pixel format unknown, assuming sRGB".into(),
            }),
        },
        Sample {
            name: "log-worker",
            message: Message::Log(Log {
                job_id: None,
                attempt: None,
                level: LogLevel::Info,
                text: "cache warmed".into(),
            }),
        },
        Sample {
            name: "complete-inline",
            message: Message::Complete(Complete {
                job_id,
                attempt: 3,
                result: Some(Payload::Inline(b"{\"width\":640}".to_vec())),
            }),
        },
        Sample {
            name: "complete-fd",
            message: Message::Complete(Complete {
                job_id: 2,
                attempt: 1,
                result: Some(Payload::Fd { index: 0, length: 1_000_000 }),
            }),
        },
        Sample { name: "complete-empty", message: Message::Complete(Complete { job_id: 1, attempt: 1, result: None }) },
        Sample {
            name: "fail",
            message: Message::Fail(Fail {
                job_id,
                attempt: 3,
                error: "image decoder: truncated PNG".into(),
                retryable: false,
            }),
        },
        Sample { name: "snooze", message: Message::Snooze(Snooze { job_id, attempt: 3, delay_ms: 30_000 }) },
        Sample {
            name: "interrupted",
            message: Message::Interrupted(Interrupted {
                job_id,
                attempt: 3,
                checkpoint: Some(b"row=2500".to_vec()),
                progress: Some(ProgressState { done: 2500, total: Some(5000), message: None }),
            }),
        },
        Sample {
            name: "peek-reply-ok",
            message: Message::PeekReply(PeekReply { request_id: 9, result: PeekResult::Ok(vec![0x2a]) }),
        },
        Sample {
            name: "peek-reply-error",
            message: Message::PeekReply(PeekReply {
                request_id: 10,
                result: PeekResult::Error("unknown query".into()),
            }),
        },
    ]
}

/// Encodes a message as one frame with the protocol's largest limit.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut bytes = Vec::new();
    message.encode_into(&mut bytes, corvee_proto::PROTOCOL_MAX_FRAME_BYTES).expect("sample encodes");
    bytes
}

/// Stand-ins for the fds a message refers to (`/dev/null`, read-only).
pub fn placeholder_fds(message: &Message) -> Vec<OwnedFd> {
    message
        .fd_indexes()
        .iter()
        .map(|_| OwnedFd::from(std::fs::File::open("/dev/null").expect("open /dev/null")))
        .collect()
}

/// A header with the given fields, for frames the encoder would refuse to
/// write.
pub fn header(code: u16, body_bytes: u32, flags: u8, fd_count: u8) -> Vec<u8> {
    let mut bytes = b"CV".to_vec();
    bytes.extend_from_slice(&code.to_le_bytes());
    bytes.extend_from_slice(&body_bytes.to_le_bytes());
    bytes.extend_from_slice(&[flags, fd_count, 0, 0]);
    bytes
}

/// A frame of type `code` around a hand-made body.
pub fn frame(code: u16, body: &[u8]) -> Vec<u8> {
    let mut bytes = header(code, body.len() as u32, 0, 0);
    bytes.extend_from_slice(body);
    bytes
}

/// A hand-made MessagePack map of string keys to already-encoded values.
pub fn map_body(entries: &[(&str, &[u8])]) -> Vec<u8> {
    assert!(entries.len() < 16);
    let mut body = vec![0x80 | entries.len() as u8];
    for (key, value) in entries {
        assert!(key.len() < 32);
        body.push(0xa0 | key.len() as u8);
        body.extend_from_slice(key.as_bytes());
        body.extend_from_slice(value);
    }
    body
}
