//! Encoding: a message becomes one frame appended to a reusable `Vec<u8>`
//! ([`encode_frame`]), and [`SendBuffer`] queues frames together with the
//! fds each must carry, so a writer can batch many small frames into one
//! write and still attach every frame's fds to the right `sendmsg`.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use crate::{
    EncodeError, FrameHeader, Message, WireMessage, DEFAULT_SEND_BUFFER_LIMIT_BYTES, HANDSHAKE_MAX_FRAME_BYTES,
    HEADER_BYTES, MAX_FDS_PER_FRAME,
};

/// Whether `indexes` are exactly `0..fd_count`, each once.
pub(crate) fn fd_indexes_match(indexes: &[u8], fd_count: usize) -> bool {
    if indexes.len() != fd_count {
        return false;
    }
    let mut seen = [false; 256];
    for &index in indexes {
        if usize::from(index) >= fd_count || seen[usize::from(index)] {
            return false;
        }
        seen[usize::from(index)] = true;
    }
    true
}

/// Appends `message` as one frame (header and MessagePack body) to `out`.
/// The frame's fd count is the number of fd indexes the message refers to.
/// Nothing is appended on error; `out` keeps its capacity, so one buffer
/// serves any number of frames without allocating once it has grown.
///
/// `max_frame_bytes` is the *peer's* limit (before the handshake:
/// [`HANDSHAKE_MAX_FRAME_BYTES`]).
pub fn encode_frame<M: WireMessage>(out: &mut Vec<u8>, message: &M, max_frame_bytes: u32) -> Result<(), EncodeError> {
    let message_type = M::MESSAGE_TYPE;
    message.validate().map_err(|reason| EncodeError::InvalidMessage { message_type, reason })?;
    let fd_indexes = message.fd_indexes();
    if fd_indexes.len() > MAX_FDS_PER_FRAME || !fd_indexes_match(&fd_indexes, fd_indexes.len()) {
        return Err(EncodeError::InvalidMessage {
            message_type,
            reason: format!("fd indexes {fd_indexes:?} must be 0..n, each once, with n at most {MAX_FDS_PER_FRAME}"),
        });
    }
    let lower_bound = (HEADER_BYTES + message.bulk_bytes()) as u64;
    if lower_bound > u64::from(max_frame_bytes) {
        return Err(EncodeError::FrameTooLarge { message_type, frame_bytes: lower_bound, max_frame_bytes });
    }
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    if let Err(source) = rmp_serde::encode::write_named(out, message) {
        out.truncate(start);
        return Err(EncodeError::Body { message_type, source });
    }
    let frame_bytes = out.len() - start;
    if frame_bytes as u64 > u64::from(max_frame_bytes) {
        out.truncate(start);
        return Err(EncodeError::FrameTooLarge { message_type, frame_bytes: frame_bytes as u64, max_frame_bytes });
    }
    let header = FrameHeader {
        message_type,
        body_bytes: u32::try_from(frame_bytes - HEADER_BYTES).expect("checked against the limit"),
        flags: 0,
        fd_count: fd_indexes.len() as u8,
    };
    out[start..start + HEADER_BYTES].copy_from_slice(&header.to_bytes());
    Ok(())
}

/// The fds of one frame, waiting to be sent with the frame's first byte.
#[derive(Debug)]
pub(crate) struct PendingFds {
    /// Offset of the frame's first byte in `SendBuffer::bytes`.
    pub(crate) at: usize,
    pub(crate) fds: Vec<OwnedFd>,
}

/// Frames waiting to be written to the socket, with their fds.
///
/// [`push`](SendBuffer::push) encodes into one growing byte buffer (reused
/// once drained, so a steady stream of small messages allocates nothing);
/// [`send_to`](SendBuffer::send_to) writes as much as the socket takes.
/// Frames without fds are written together in large writes; a frame with
/// fds starts a new `sendmsg` that carries them, which is what lets the
/// receiver match fds to frames (see `docs/protocol.md`, "File
/// descriptors").
#[derive(Debug)]
pub struct SendBuffer {
    pub(crate) bytes: Vec<u8>,
    /// How many bytes of `bytes` have been written.
    pub(crate) sent: usize,
    /// In order of `at`.
    pub(crate) pending_fds: VecDeque<PendingFds>,
    peer_max_frame_bytes: u32,
    limit_bytes: usize,
}

impl Default for SendBuffer {
    fn default() -> SendBuffer {
        SendBuffer::new()
    }
}

impl SendBuffer {
    /// An empty buffer. Until [`set_peer_max_frame_bytes`] is called with the
    /// peer's announced limit, frames are limited to
    /// [`HANDSHAKE_MAX_FRAME_BYTES`].
    ///
    /// [`set_peer_max_frame_bytes`]: SendBuffer::set_peer_max_frame_bytes
    pub fn new() -> SendBuffer {
        SendBuffer::with_limit(DEFAULT_SEND_BUFFER_LIMIT_BYTES)
    }

    /// An empty buffer that refuses new frames while `limit_bytes` or more
    /// are unsent.
    pub fn with_limit(limit_bytes: usize) -> SendBuffer {
        SendBuffer {
            bytes: Vec::new(),
            sent: 0,
            pending_fds: VecDeque::new(),
            peer_max_frame_bytes: HANDSHAKE_MAX_FRAME_BYTES,
            limit_bytes,
        }
    }

    /// Sets the largest frame the peer accepts, from its hello or welcome.
    pub fn set_peer_max_frame_bytes(&mut self, max_frame_bytes: u32) {
        self.peer_max_frame_bytes = max_frame_bytes;
    }

    /// The largest frame the peer accepts, as far as this side knows.
    pub fn peer_max_frame_bytes(&self) -> u32 {
        self.peer_max_frame_bytes
    }

    /// Encodes `message` as a frame at the end of the buffer. `fds` are the
    /// frame's fds, in the order of the indexes the message refers to;
    /// they are closed here once sent (or when the buffer is dropped).
    pub fn push<M: WireMessage>(&mut self, message: &M, fds: Vec<OwnedFd>) -> Result<(), EncodeError> {
        let referenced = message.fd_indexes().len();
        if referenced != fds.len() {
            return Err(EncodeError::FdCount { message_type: M::MESSAGE_TYPE, referenced, given: fds.len() });
        }
        let pending_bytes = self.pending_bytes();
        if pending_bytes >= self.limit_bytes {
            return Err(EncodeError::SendBufferFull { pending_bytes, limit_bytes: self.limit_bytes });
        }
        self.reclaim();
        let at = self.bytes.len();
        encode_frame(&mut self.bytes, message, self.peer_max_frame_bytes)?;
        if !fds.is_empty() {
            self.pending_fds.push_back(PendingFds { at, fds });
        }
        Ok(())
    }

    /// [`push`](SendBuffer::push) for a message held in the [`Message`]
    /// enum.
    pub fn push_message(&mut self, message: &Message, fds: Vec<OwnedFd>) -> Result<(), EncodeError> {
        match message {
            Message::Hello(m) => self.push(m, fds),
            Message::Welcome(m) => self.push(m, fds),
            Message::Refusal(m) => self.push(m, fds),
            Message::Heartbeat(m) => self.push(m, fds),
            Message::Shutdown(m) => self.push(m, fds),
            Message::Goodbye(m) => self.push(m, fds),
            Message::Job(m) => self.push(m, fds),
            Message::Interrupt(m) => self.push(m, fds),
            Message::Peek(m) => self.push(m, fds),
            Message::Progress(m) => self.push(m, fds),
            Message::Checkpoint(m) => self.push(m, fds),
            Message::Log(m) => self.push(m, fds),
            Message::Complete(m) => self.push(m, fds),
            Message::Fail(m) => self.push(m, fds),
            Message::Snooze(m) => self.push(m, fds),
            Message::Interrupted(m) => self.push(m, fds),
            Message::PeekReply(m) => self.push(m, fds),
        }
    }

    /// Bytes encoded but not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.bytes.len() - self.sent
    }

    /// Whether everything has been written.
    pub fn is_empty(&self) -> bool {
        self.pending_bytes() == 0
    }

    /// The bytes not yet written (for tests, and for writers that do their
    /// own I/O on frames without fds).
    pub fn unsent(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    /// The buffer's capacity, to check that it is reused.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Records that `count` more bytes were written by the caller's own I/O.
    /// Panics if that would pass a frame whose fds have not been sent.
    pub fn consume(&mut self, count: usize) {
        let end = self.sent + count;
        assert!(end <= self.bytes.len(), "consumed more than is pending");
        if let Some(next) = self.pending_fds.front() {
            assert!(end <= next.at, "bytes of a frame with fds must be sent by SendBuffer::send_to");
        }
        self.sent = end;
    }

    /// Where the next write must stop: the start of the next frame with
    /// fds, unless that frame starts right here.
    pub(crate) fn next_stop(&self) -> usize {
        match self.pending_fds.front() {
            Some(next) if next.at > self.sent => next.at,
            Some(_) => match self.pending_fds.get(1) {
                Some(after) => after.at,
                None => self.bytes.len(),
            },
            None => self.bytes.len(),
        }
    }

    /// Drops written bytes: all of them when everything is written (the
    /// capacity stays), or the written prefix once it is both large and
    /// most of the buffer.
    fn reclaim(&mut self) {
        if self.sent == self.bytes.len() {
            self.bytes.clear();
            self.sent = 0;
        } else if self.sent >= 64 << 10 && self.sent * 2 >= self.bytes.len() {
            self.bytes.drain(..self.sent);
            for pending in &mut self.pending_fds {
                pending.at -= self.sent;
            }
            self.sent = 0;
        }
    }
}
