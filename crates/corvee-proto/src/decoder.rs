//! Decoding: [`FrameDecoder`] takes bytes and received fds in any pieces and
//! hands out whole frames. It does no I/O itself (see
//! [`FrameDecoder::recv_from`] for the socket glue), so the supervisor's
//! event loop and a blocking worker use the same code.
//!
//! Memory is bounded: a header is checked (magic, size against the limit,
//! type) before any room is made for its body, the buffer never holds more
//! than one frame plus one read chunk when the caller drains frames between
//! reads, and at most [`MAX_QUEUED_FDS`] fds wait for their frames.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use crate::encoder::fd_indexes_match;
use crate::{
    DecodeError, FrameHeader, Message, Peer, HANDSHAKE_MAX_FRAME_BYTES, HEADER_BYTES, MAX_FDS_PER_FRAME,
    MAX_QUEUED_FDS, PROTOCOL_MAX_FRAME_BYTES, READ_CHUNK_BYTES,
};

/// Buffers larger than this are released once drained, so one large frame
/// does not pin its memory for the life of the connection.
const SHRINK_ABOVE_BYTES: usize = 1 << 20;

/// A whole frame, its body borrowed from the decoder's buffer.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The checked header.
    pub header: FrameHeader,
    /// The MessagePack body (`header.body_bytes` long).
    pub body: &'a [u8],
    /// The fds that arrived with this frame (`header.fd_count` of them).
    pub fds: Vec<OwnedFd>,
}

impl Frame<'_> {
    /// Decodes the body into a message and checks that its fd fields refer
    /// to exactly the fds that came with the frame.
    pub fn decode(self) -> Result<Received, DecodeError> {
        let message_type = self.header.message_type;
        let message = Message::decode(message_type, self.body)?;
        let referenced = message.fd_indexes();
        if !fd_indexes_match(&referenced, self.fds.len()) {
            return Err(DecodeError::FdReferences { message_type, fd_count: self.header.fd_count, referenced });
        }
        Ok(Received::new(message, self.fds))
    }
}

/// A decoded message and the fds that came with it.
#[derive(Debug)]
pub struct Received {
    /// The message.
    pub message: Message,
    /// Its fds in index order: a field such as `payload_fd: 0` refers to
    /// the first. Fds nobody takes are closed when this is dropped.
    fds: Vec<Option<OwnedFd>>,
}

impl Received {
    /// A message with its fds (for tests and for code that decodes frames
    /// itself).
    pub fn new(message: Message, fds: Vec<OwnedFd>) -> Received {
        Received { message, fds: fds.into_iter().map(Some).collect() }
    }

    /// How many fds came with the message.
    pub fn fd_count(&self) -> usize {
        self.fds.len()
    }

    /// Takes fd number `index` of the frame, if it exists and was not taken
    /// already.
    pub fn take_fd(&mut self, index: u8) -> Option<OwnedFd> {
        self.fds.get_mut(usize::from(index))?.take()
    }
}

/// Turns a byte stream (and the fds received alongside it) into frames.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Received bytes live in `buffer[start..end]`; `buffer[end..]` is room
    /// for the next read.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// Received fds not yet handed out with a frame, in arrival order.
    fds: VecDeque<OwnedFd>,
    max_frame_bytes: u32,
    /// When set, frames sent by this side itself are rejected.
    receiver: Option<Peer>,
    /// A problem noticed while receiving, reported by the next
    /// `next_frame`.
    pending_error: Option<DecodeError>,
    /// The first framing error, after which every call fails.
    failed: Option<String>,
}

impl FrameDecoder {
    /// A decoder that accepts frames up to `max_frame_bytes` (header
    /// included). Panics unless the limit is within
    /// [`HANDSHAKE_MAX_FRAME_BYTES`]`..=`[`PROTOCOL_MAX_FRAME_BYTES`]: a
    /// limit outside that range is a configuration bug.
    pub fn new(max_frame_bytes: u32) -> FrameDecoder {
        assert!(
            (HANDSHAKE_MAX_FRAME_BYTES..=PROTOCOL_MAX_FRAME_BYTES).contains(&max_frame_bytes),
            "max_frame_bytes {max_frame_bytes} is outside \
             {HANDSHAKE_MAX_FRAME_BYTES}..={PROTOCOL_MAX_FRAME_BYTES}"
        );
        FrameDecoder {
            buffer: Vec::new(),
            start: 0,
            end: 0,
            fds: VecDeque::new(),
            max_frame_bytes,
            receiver: None,
            pending_error: None,
            failed: None,
        }
    }

    /// Rejects (with [`DecodeError::WrongDirection`], at the header) frames
    /// whose type `receiver` itself sends.
    pub fn receiving_as(mut self, receiver: Peer) -> FrameDecoder {
        self.receiver = Some(receiver);
        self
    }

    /// The largest frame accepted.
    pub fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// Bytes received but not yet handed out in a frame.
    pub fn buffered_bytes(&self) -> usize {
        self.end - self.start
    }

    /// The size of the internal buffer (to check the memory bound).
    pub fn buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// Fds received but not yet handed out with a frame.
    pub fn queued_fds(&self) -> usize {
        self.fds.len()
    }

    /// Appends received bytes. (A reader that can read into a slice should
    /// use [`read_buffer`](FrameDecoder::read_buffer) instead and save the
    /// copy.)
    pub fn feed(&mut self, bytes: &[u8]) {
        self.make_room(bytes.len());
        self.buffer[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Queues fds received from the socket, in arrival order. Beyond
    /// [`MAX_QUEUED_FDS`] they are closed and the next
    /// [`next_frame`](FrameDecoder::next_frame) reports it.
    pub fn feed_fds(&mut self, fds: impl IntoIterator<Item = OwnedFd>) {
        let mut closed = 0;
        for fd in fds {
            if self.fds.len() < MAX_QUEUED_FDS {
                self.fds.push_back(fd);
            } else {
                drop(fd);
                closed += 1;
            }
        }
        if closed > 0 && self.pending_error.is_none() {
            self.pending_error =
                Some(DecodeError::UnexpectedFds { count: closed, context: "more fds arrived than frames can claim" });
        }
    }

    /// Notes a receive whose control data the kernel truncated.
    pub(crate) fn note_fds_truncated(&mut self) {
        if self.pending_error.is_none() {
            self.pending_error = Some(DecodeError::FdsTruncated);
        }
    }

    /// Room to read into: at least the rest of the frame being received, or
    /// [`READ_CHUNK_BYTES`]. Call [`commit_read`](FrameDecoder::commit_read)
    /// with the count read.
    ///
    /// Call [`next_frame`](FrameDecoder::next_frame) until it returns `None`
    /// between reads; that keeps the buffer within one frame plus one chunk
    /// (this is asserted).
    pub fn read_buffer(&mut self) -> &mut [u8] {
        let limit = self.max_frame_bytes as usize + READ_CHUNK_BYTES;
        assert!(
            self.buffered_bytes() <= limit,
            "FrameDecoder holds {} bytes: call next_frame until it returns None before reading more",
            self.buffered_bytes()
        );
        let wanted = match self.peek_header() {
            Some(Ok(header)) => {
                let missing = (header.frame_bytes() as usize).saturating_sub(self.buffered_bytes());
                missing.max(READ_CHUNK_BYTES)
            }
            // An invalid header is reported by next_frame; reserve nothing
            // on its account.
            Some(Err(_)) | None => READ_CHUNK_BYTES,
        };
        self.make_room(wanted);
        &mut self.buffer[self.end..]
    }

    /// Records that `count` bytes were read into
    /// [`read_buffer`](FrameDecoder::read_buffer).
    pub fn commit_read(&mut self, count: usize) {
        assert!(self.end + count <= self.buffer.len(), "committed more than the read buffer");
        self.end += count;
    }

    /// The next whole frame, `None` if more bytes are needed. An error means
    /// the stream is broken: close the connection.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        if let Some(first_error) = &self.failed {
            return Err(DecodeError::Poisoned { first_error: first_error.clone() });
        }
        if let Some(error) = self.pending_error.take() {
            return Err(self.fail(error));
        }
        let header = match self.peek_header() {
            None => {
                // Fds travel with a frame's first byte. With no unread
                // byte, or only part of a header, the queue can hold at
                // most the fds of the frame being started.
                if self.buffered_bytes() == 0 && !self.fds.is_empty() {
                    let count = self.fds.len();
                    self.fds.clear();
                    return Err(self.fail(DecodeError::UnexpectedFds { count, context: "no frame was being received" }));
                }
                if self.fds.len() > MAX_FDS_PER_FRAME {
                    let count = self.fds.len();
                    self.fds.clear();
                    return Err(self.fail(DecodeError::UnexpectedFds {
                        count,
                        context: "more than one frame's worth before a header",
                    }));
                }
                return Ok(None);
            }
            Some(Err(error)) => return Err(self.fail(error)),
            Some(Ok(header)) => header,
        };
        let fd_count = usize::from(header.fd_count);
        let frame_bytes = header.frame_bytes() as usize;
        if self.buffered_bytes() < frame_bytes {
            // The buffer holds part of this frame only, so every queued fd
            // is this frame's.
            if self.fds.len() > fd_count {
                let count = self.fds.len() - fd_count;
                self.fds.clear();
                return Err(self.fail(DecodeError::UnexpectedFds {
                    count,
                    context: "beyond the fd count of the frame being received",
                }));
            }
            return Ok(None);
        }
        if self.fds.len() < fd_count {
            let received = self.fds.len();
            self.fds.clear();
            return Err(self.fail(DecodeError::MissingFds {
                message_type: header.message_type,
                fd_count: header.fd_count,
                received,
            }));
        }
        let fds: Vec<OwnedFd> = self.fds.drain(..fd_count).collect();
        let body_start = self.start + HEADER_BYTES;
        let body_end = self.start + frame_bytes;
        if body_end == self.end && !self.fds.is_empty() {
            // No later frame has begun, so the rest arrived with this one.
            let count = self.fds.len();
            self.fds.clear();
            return Err(self.fail(DecodeError::UnexpectedFds {
                count,
                context: "beyond the fd count of the frame they came with",
            }));
        }
        self.start = body_end;
        Ok(Some(Frame { header, body: &self.buffer[body_start..body_end], fds }))
    }

    /// The next whole frame, decoded.
    pub fn next_message(&mut self) -> Result<Option<Received>, DecodeError> {
        match self.next_frame()? {
            Some(frame) => frame.decode().map(Some),
            None => Ok(None),
        }
    }

    /// Call when the stream has ended (a read returned 0): an error if it
    /// ended inside a frame or left fds no frame claimed.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        if let Some(first_error) = &self.failed {
            return Err(DecodeError::Poisoned { first_error: first_error.clone() });
        }
        if let Some(error) = self.pending_error.take() {
            return Err(self.fail(error));
        }
        if self.buffered_bytes() > 0 {
            let expected = match self.peek_header() {
                Some(Ok(header)) => Some(header.frame_bytes()),
                Some(Err(error)) => return Err(self.fail(error)),
                None => None,
            };
            let buffered = self.buffered_bytes();
            return Err(self.fail(DecodeError::TruncatedFrame { buffered, expected }));
        }
        if !self.fds.is_empty() {
            let count = self.fds.len();
            self.fds.clear();
            return Err(self.fail(DecodeError::UnexpectedFds { count, context: "at the end of the stream" }));
        }
        Ok(())
    }

    /// The header of the next frame, if all 12 bytes are here.
    fn peek_header(&self) -> Option<Result<FrameHeader, DecodeError>> {
        if self.buffered_bytes() < HEADER_BYTES {
            return None;
        }
        let bytes: &[u8; HEADER_BYTES] =
            self.buffer[self.start..self.start + HEADER_BYTES].try_into().expect("slice of HEADER_BYTES");
        let header = match FrameHeader::parse(bytes, self.max_frame_bytes) {
            Ok(header) => header,
            Err(error) => return Some(Err(error)),
        };
        if let Some(receiver) = self.receiver {
            if header.message_type.sender() == receiver {
                return Some(Err(DecodeError::WrongDirection { message_type: header.message_type, sender: receiver }));
            }
        }
        Some(Ok(header))
    }

    fn fail(&mut self, error: DecodeError) -> DecodeError {
        self.failed = Some(error.to_string());
        self.fds.clear();
        error
    }

    /// Makes `wanted` bytes of room after `end`: first by dropping consumed
    /// bytes, then by growing.
    fn make_room(&mut self, wanted: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buffer.len() > SHRINK_ABOVE_BYTES && wanted <= READ_CHUNK_BYTES {
                self.buffer = Vec::new();
            }
        }
        if self.buffer.len() - self.end >= wanted {
            return;
        }
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buffer.len() - self.end < wanted {
            self.buffer.resize(self.end + wanted, 0);
        }
    }
}
