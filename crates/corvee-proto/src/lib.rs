//! corvee-proto: the wire protocol between the supervisor and its worker
//! processes — the frame header, every message, a sans-I/O codec, and the
//! fd-passing helpers. It does no async I/O and knows nothing of tokio: the
//! supervisor drives a non-blocking socket with it, the worker SDKs a
//! blocking one.
//!
//! ```
//! use corvee_proto::{FrameDecoder, Heartbeat, Message, SendBuffer, DEFAULT_MAX_FRAME_BYTES};
//!
//! // Encode: frames are appended to one reusable buffer.
//! let mut outgoing = SendBuffer::new();
//! outgoing.push(&Heartbeat {}, Vec::new())?;
//!
//! // Decode: feed bytes (and received fds) in, pull complete messages out.
//! let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
//! decoder.feed(outgoing.unsent());
//! let received = decoder.next_message()?.expect("one whole frame was fed");
//! assert_eq!(received.message, Message::Heartbeat(Heartbeat {}));
//! assert!(decoder.next_message()?.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With a socket, [`FrameDecoder::recv_from`] reads straight into the
//! decoder's buffer (queueing any fds that arrive), and
//! [`SendBuffer::send_to`] writes pending frames, attaching each frame's fds
//! to the `sendmsg` that carries its first byte. Both return
//! `ErrorKind::WouldBlock` on a non-blocking socket that is not ready, which
//! is what an async runtime's readiness API expects; with tokio, for
//! instance:
//!
//! ```text
//! let socket = tokio::io::unix::AsyncFd::new(supervisor_end)?; // non-blocking OwnedFd
//! loop {
//!     let mut ready = socket.readable().await?;
//!     match ready.try_io(|socket| decoder.recv_from(socket.get_ref())) {
//!         Ok(Ok(0)) => break decoder.finish()?, // the worker closed its end
//!         Ok(Ok(_)) => while let Some(received) = decoder.next_message()? { /* ... */ },
//!         Ok(Err(error)) => return Err(error.into()),
//!         Err(_would_block) => continue,
//!     }
//! }
//! ```
//!
//! `docs/protocol.md` is the specification: the byte layout, every message
//! and field, the handshake, windows, heartbeats, interrupts, fd payloads,
//! versioning, and the golden vectors under `docs/protocol/`.

mod bin;
mod body;
mod decoder;
mod encoder;
mod error;
mod header;
mod limits;
mod message_type;
mod messages;
mod payload;
mod transport;

pub use decoder::{Frame, FrameDecoder, Received};
pub use encoder::{encode_frame, SendBuffer};
pub use error::{DecodeError, EncodeError, PayloadError, WorkerSocketError};
pub use header::{FrameHeader, CRITICAL_FLAGS, HEADER_BYTES, MAGIC};
pub use limits::{
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_SEND_BUFFER_LIMIT_BYTES, HANDSHAKE_MAX_FRAME_BYTES, MAX_BODY_DEPTH,
    MAX_FDS_PER_FRAME, MAX_QUEUED_FDS, PROTOCOL_MAX_FRAME_BYTES, READ_CHUNK_BYTES,
};
pub use message_type::{MessageType, Peer, ORDERED_QUEUE_TYPES, RESERVED_ORDERED_QUEUE_TYPES};
pub use messages::{
    Capabilities, Checkpoint, Complete, Fail, Goodbye, Heartbeat, Hello, Interrupt, Interrupted, Job, Log, LogLevel,
    Message, Payload, Peek, PeekReply, PeekResult, Progress, ProgressState, Refusal, Shutdown, Snooze, Welcome,
    WireMessage,
};
pub use payload::{map_payload, map_payload_unsealed, read_payload, sealed_memfd, PayloadMap};
pub use transport::{
    install_worker_fd, recv_with_fds, send_with_fds, socket_pair, worker_socket_from_env, RecvOutcome,
};

/// The protocol version this crate speaks. A worker announces the range it
/// speaks in its hello; the supervisor picks one in that range or refuses.
pub const PROTOCOL_VERSION: u16 = 1;

/// The oldest protocol version this crate still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// The environment variable that tells a worker which fd its end of the
/// protocol socket is on.
pub const WORKER_FD_ENV: &str = "CORVEE_WORKER_FD";

/// The fd a supervisor places the worker's end of the socket on: the first
/// one after stdin, stdout and stderr.
pub const WORKER_FD: i32 = 3;
