//! The golden vectors under `docs/protocol/`: exact frame bytes for
//! representative messages plus frames every receiver must reject, and
//! `vectors.json` describing them. The committed files are the reference:
//! this test decodes each one, compares it with the message the code
//! builds, re-encodes it byte for byte, and checks the manifest. The Python
//! SDK's tests read the same files.
//!
//! To regenerate after an intended change of encoding or samples:
//! `CORVEE_REGENERATE_VECTORS=1 cargo nextest run -p corvee-proto golden`.

use std::collections::BTreeSet;
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use corvee_proto::{FrameDecoder, MessageType, PROTOCOL_MAX_FRAME_BYTES, PROTOCOL_VERSION};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::samples::{encode, frame, header, map_body, samples};

const REGENERATE_ENV: &str = "CORVEE_REGENERATE_VECTORS";

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol")
}

/// A frame every receiver must reject, and with which error kind.
struct InvalidVector {
    name: &'static str,
    bytes: Vec<u8>,
    /// How many fds the test supplies along with the bytes.
    fds_supplied: usize,
    error: &'static str,
    note: &'static str,
}

fn invalid_vectors() -> Vec<InvalidVector> {
    let samples = samples();
    let sample =
        |name: &str| encode(&samples.iter().find(|sample| sample.name == name).expect("sample exists").message);
    let mut unknown_flag = frame(MessageType::Heartbeat.code(), &[0x80]);
    unknown_flag[8] = 0x01;
    let mut unreferenced_fd = frame(MessageType::Heartbeat.code(), &[0x80]);
    unreferenced_fd[9] = 1;
    let mut deep = Vec::new();
    for _ in 0..40 {
        deep.extend_from_slice(&[0x81, 0xa1, b'x']);
    }
    deep.push(0xc0);
    let both_payloads = map_body(&[
        ("job_id", &[0x01]),
        ("attempt", &[0x01]),
        ("queue", b"\xa1q"),
        ("kind", b"\xa1k"),
        ("payload", &[0xc4, 0x01, 0x00]),
        ("payload_fd", &[0x00]),
        ("payload_length", &[0x01]),
    ]);
    let mut both_payloads_frame = frame(MessageType::Job.code(), &both_payloads);
    both_payloads_frame[9] = 1;
    vec![
        InvalidVector {
            name: "bad-magic",
            bytes: b"hello world, I am a log line\n".to_vec(),
            fds_supplied: 0,
            error: "bad_magic",
            note: "a worker printed to the protocol socket",
        },
        InvalidVector {
            name: "frame-too-large",
            bytes: header(MessageType::Job.code(), u32::MAX, 0, 0),
            fds_supplied: 0,
            error: "frame_too_large",
            note: "only a header announcing a 4 GiB body: rejected before any body arrives",
        },
        InvalidVector {
            name: "unknown-message-type",
            bytes: frame(0x0042, &[0x80]),
            fds_supplied: 0,
            error: "unknown_message_type",
            note: "type 0x0042 does not exist",
        },
        InvalidVector {
            name: "reserved-message-type",
            bytes: frame(0x0100, &[0x80]),
            fds_supplied: 0,
            error: "reserved_message_type",
            note: "type 0x0100 (event) is reserved for ordered queues",
        },
        InvalidVector {
            name: "unknown-critical-flag",
            bytes: unknown_flag,
            fds_supplied: 0,
            error: "unknown_critical_flags",
            note: "flag bit 0 is critical and undefined in version 1",
        },
        InvalidVector {
            name: "truncated-frame",
            bytes: sample("job-inline")[..20].to_vec(),
            fds_supplied: 0,
            error: "truncated_frame",
            note: "the stream ends 20 bytes into a frame (reported at end of stream)",
        },
        InvalidVector {
            name: "body-not-a-map",
            bytes: frame(MessageType::Heartbeat.code(), &[0x91, 0x01]),
            fds_supplied: 0,
            error: "malformed_body",
            note: "the body is an array, not a map of named fields",
        },
        InvalidVector {
            name: "trailing-bytes",
            bytes: frame(MessageType::Heartbeat.code(), &[0x80, 0xc0]),
            fds_supplied: 0,
            error: "malformed_body",
            note: "a nil follows the body's map",
        },
        InvalidVector {
            name: "too-deep",
            bytes: frame(MessageType::Heartbeat.code(), &deep),
            fds_supplied: 0,
            error: "malformed_body",
            note: "an unknown field nests maps 41 levels deep (limit 32)",
        },
        InvalidVector {
            name: "ext-value",
            bytes: frame(MessageType::Heartbeat.code(), &map_body(&[("x", &[0xd4, 0x01, 0x02])])),
            fds_supplied: 0,
            error: "malformed_body",
            note: "an unknown field holds a MessagePack ext value",
        },
        InvalidVector {
            name: "missing-field",
            bytes: frame(MessageType::Progress.code(), &map_body(&[("job_id", &[0x01]), ("done", &[0x00])])),
            fds_supplied: 0,
            error: "bad_body",
            note: "a progress message without its attempt",
        },
        InvalidVector {
            name: "bin-written-as-str",
            bytes: frame(
                MessageType::Checkpoint.code(),
                &map_body(&[("job_id", &[0x01]), ("attempt", &[0x01]), ("checkpoint", b"\xa2hi")]),
            ),
            fds_supplied: 0,
            error: "bad_body",
            note: "checkpoint bytes written as str instead of bin",
        },
        InvalidVector {
            name: "both-payload-forms",
            bytes: both_payloads_frame,
            fds_supplied: 1,
            error: "bad_body",
            note: "a job with both payload and payload_fd",
        },
        InvalidVector {
            name: "attempt-zero",
            bytes: frame(
                MessageType::Fail.code(),
                &map_body(&[("job_id", &[0x01]), ("attempt", &[0x00]), ("error", b"\xa4oops"), ("retryable", &[0xc2])]),
            ),
            fds_supplied: 0,
            error: "invalid_message",
            note: "attempts count from 1",
        },
        InvalidVector {
            name: "missing-fds",
            bytes: sample("job-payload-fd"),
            fds_supplied: 0,
            error: "missing_fds",
            note: "the job-payload-fd frame arriving without its fd",
        },
        InvalidVector {
            name: "unreferenced-fd",
            bytes: unreferenced_fd,
            fds_supplied: 1,
            error: "fd_references",
            note: "a heartbeat whose header announces an fd its body never refers to",
        },
    ]
}

/// A MessagePack value read as JSON, with `bin` as `{"hex": "..."}`.
struct JsonView(Value);

impl<'de> Deserialize<'de> for JsonView {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonView, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = JsonView;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any MessagePack value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<JsonView, E> {
        Ok(JsonView(Value::Bool(value)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<JsonView, E> {
        Ok(JsonView(json!(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<JsonView, E> {
        Ok(JsonView(json!(value)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<JsonView, E> {
        Ok(JsonView(json!(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<JsonView, E> {
        Ok(JsonView(Value::String(value.to_owned())))
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<JsonView, E> {
        let hex: String = value.iter().map(|byte| format!("{byte:02x}")).collect();
        Ok(JsonView(json!({ "hex": hex })))
    }

    fn visit_unit<E: de::Error>(self) -> Result<JsonView, E> {
        Ok(JsonView(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<JsonView, E> {
        Ok(JsonView(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonView, A::Error> {
        let mut items = Vec::new();
        while let Some(JsonView(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(JsonView(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonView, A::Error> {
        let mut object = Map::new();
        while let Some((key, JsonView(value))) = map.next_entry::<String, JsonView>()? {
            object.insert(key, value);
        }
        Ok(JsonView(Value::Object(object)))
    }
}

fn body_as_json(frame: &[u8]) -> Value {
    let JsonView(value) =
        rmp_serde::from_slice(&frame[corvee_proto::HEADER_BYTES..]).expect("a sample body is valid MessagePack");
    value
}

/// The manifest the code produces for the current samples.
fn expected_manifest() -> Value {
    let vectors: Vec<Value> = samples()
        .iter()
        .map(|sample| {
            let bytes = encode(&sample.message);
            let message_type = sample.message.message_type();
            json!({
                "file": format!("{}.bin", sample.name),
                "message_type": message_type.code(),
                "message_name": message_type.name(),
                "fd_count": sample.message.fd_indexes().len(),
                "frame_bytes": bytes.len(),
                "fields": body_as_json(&bytes),
            })
        })
        .collect();
    let invalid: Vec<Value> = invalid_vectors()
        .iter()
        .map(|vector| {
            json!({
                "file": format!("invalid/{}.bin", vector.name),
                "fds_supplied": vector.fds_supplied,
                "error": vector.error,
                "note": vector.note,
            })
        })
        .collect();
    json!({
        "about": "Golden test vectors of the corvee worker protocol. Each file in `vectors` \
                  is one whole frame (header and body); `fields` is its body as JSON. Each \
                  file in `invalid` must be rejected with the named error kind when fed to a \
                  decoder together with `fds_supplied` placeholder fds and then ended. \
                  Generated by corvee-proto's tests (CORVEE_REGENERATE_VECTORS=1); the \
                  committed bytes are the reference. See docs/protocol.md.",
        "protocol_version": PROTOCOL_VERSION,
        "byte_fields": "MessagePack bin values appear in `fields` as {\"hex\": \"<lowercase hex>\"}",
        "vectors": vectors,
        "invalid": invalid,
    })
}

fn regenerate() {
    let dir = vectors_dir();
    std::fs::create_dir_all(dir.join("invalid")).unwrap();
    for stale in list_bin_files(&dir) {
        std::fs::remove_file(dir.join(stale)).unwrap();
    }
    for sample in samples() {
        std::fs::write(dir.join(format!("{}.bin", sample.name)), encode(&sample.message)).unwrap();
    }
    for vector in invalid_vectors() {
        std::fs::write(dir.join(format!("invalid/{}.bin", vector.name)), &vector.bytes).unwrap();
    }
    let mut text = serde_json::to_string_pretty(&expected_manifest()).unwrap();
    text.push('\n');
    std::fs::write(dir.join("vectors.json"), text).unwrap();
}

/// The `.bin` files under `dir` and `dir/invalid`, relative to `dir`.
fn list_bin_files(dir: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for sub in ["", "invalid/"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".bin") {
                files.insert(format!("{sub}{name}"));
            }
        }
    }
    files
}

fn placeholder(count: usize) -> Vec<OwnedFd> {
    (0..count).map(|_| OwnedFd::from(std::fs::File::open("/dev/null").unwrap())).collect()
}

const REGENERATE_HINT: &str = "if the change is intended, regenerate the vectors with \
     CORVEE_REGENERATE_VECTORS=1 cargo nextest run -p corvee-proto golden, review the diff, \
     and check that the Python SDK still passes";

#[test]
fn golden_vectors_decode_to_the_samples_and_re_encode_byte_for_byte() {
    if std::env::var_os(REGENERATE_ENV).is_some() {
        regenerate();
    }
    let dir = vectors_dir();
    let manifest_text = std::fs::read_to_string(dir.join("vectors.json")).unwrap();
    let manifest: Value = serde_json::from_str(&manifest_text).unwrap();
    assert_eq!(
        manifest,
        expected_manifest(),
        "docs/protocol/vectors.json differs from what the code produces; {REGENERATE_HINT}"
    );

    let mut listed = BTreeSet::new();
    for sample in samples() {
        let file = format!("{}.bin", sample.name);
        let bytes = std::fs::read(dir.join(&file)).unwrap();
        let fd_count = sample.message.fd_indexes().len();
        let mut decoder = FrameDecoder::new(PROTOCOL_MAX_FRAME_BYTES);
        decoder.feed(&bytes);
        decoder.feed_fds(placeholder(fd_count));
        let received = decoder
            .next_message()
            .unwrap_or_else(|error| panic!("{file}: {error}"))
            .unwrap_or_else(|| panic!("{file} is not a whole frame"));
        decoder.finish().unwrap();
        assert_eq!(received.message, sample.message, "{file}: {REGENERATE_HINT}");
        assert_eq!(received.fd_count(), fd_count, "{file}");
        assert_eq!(encode(&received.message), bytes, "{file} does not re-encode byte for byte");
        listed.insert(file);
    }
    for vector in invalid_vectors() {
        let file = format!("invalid/{}.bin", vector.name);
        let bytes = std::fs::read(dir.join(&file)).unwrap();
        assert_eq!(bytes, vector.bytes, "{file}: {REGENERATE_HINT}");
        let mut decoder = FrameDecoder::new(PROTOCOL_MAX_FRAME_BYTES);
        decoder.feed(&bytes);
        decoder.feed_fds(placeholder(vector.fds_supplied));
        let error = match decoder.next_message() {
            Ok(Some(received)) => panic!("{file} decoded to {:?}", received.message),
            Ok(None) => decoder.finish().expect_err(&file),
            Err(error) => error,
        };
        assert_eq!(error.kind(), vector.error, "{file}: {error}");
        listed.insert(file);
    }
    assert_eq!(list_bin_files(&dir), listed, "docs/protocol holds .bin files that no vector lists");
}
