//! The fixed 12-byte frame header: its byte layout, and the checks a
//! receiver makes on it before it reserves room for, or waits for, the body.
//!
//! | offset | size | field          | meaning                                   |
//! |--------|------|----------------|-------------------------------------------|
//! | 0      | 2    | `magic`        | the bytes `43 56` (`"CV"`)                |
//! | 2      | 2    | `message_type` | u16 little-endian, see [`MessageType`]    |
//! | 4      | 4    | `body_bytes`   | u32 little-endian, bytes after the header |
//! | 8      | 1    | `flags`        | bits 0–3 critical, 4–7 advisory           |
//! | 9      | 1    | `fd_count`     | fds attached to this frame                |
//! | 10     | 2    | `reserved`     | zero                                      |

use crate::{DecodeError, MessageType, MAX_FDS_PER_FRAME};

/// Size of the frame header in bytes.
pub const HEADER_BYTES: usize = 12;

/// The first two bytes of every frame. They let a receiver tell a frame
/// from stray output (a worker printing to the wrong fd) and name that
/// mistake instead of reading "hell" as a length.
pub const MAGIC: [u8; 2] = *b"CV";

/// The flag bits a receiver must understand: a frame with an unknown bit
/// among these is rejected. Unknown bits outside this mask are advisory and
/// ignored. Version 1 defines no flag; senders write 0.
pub const CRITICAL_FLAGS: u8 = 0x0f;

/// Critical flags this version understands (none).
const KNOWN_CRITICAL_FLAGS: u8 = 0;

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the body holds.
    pub message_type: MessageType,
    /// Length of the body that follows the header.
    pub body_bytes: u32,
    /// Flag bits (see [`CRITICAL_FLAGS`]).
    pub flags: u8,
    /// How many file descriptors travel with this frame.
    pub fd_count: u8,
}

impl FrameHeader {
    /// Header plus body.
    pub fn frame_bytes(&self) -> u64 {
        HEADER_BYTES as u64 + u64::from(self.body_bytes)
    }

    /// The 12 bytes on the wire.
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut bytes = [0u8; HEADER_BYTES];
        bytes[0..2].copy_from_slice(&MAGIC);
        bytes[2..4].copy_from_slice(&self.message_type.code().to_le_bytes());
        bytes[4..8].copy_from_slice(&self.body_bytes.to_le_bytes());
        bytes[8] = self.flags;
        bytes[9] = self.fd_count;
        bytes
    }

    /// Parses and checks a header. The size is checked right after the
    /// magic, before anything else, so that no caller ever reserves memory
    /// for an oversized frame.
    pub fn parse(bytes: &[u8; HEADER_BYTES], max_frame_bytes: u32) -> Result<Self, DecodeError> {
        let found = [bytes[0], bytes[1]];
        if found != MAGIC {
            return Err(DecodeError::BadMagic { found });
        }
        let code = u16::from_le_bytes([bytes[2], bytes[3]]);
        let body_bytes = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let frame_bytes = HEADER_BYTES as u64 + u64::from(body_bytes);
        if frame_bytes > u64::from(max_frame_bytes) {
            return Err(DecodeError::FrameTooLarge { code, frame_bytes, max_frame_bytes });
        }
        let message_type = MessageType::from_code(code)?;
        let reserved = u16::from_le_bytes([bytes[10], bytes[11]]);
        if reserved != 0 {
            return Err(DecodeError::ReservedHeaderBytes { message_type, reserved });
        }
        let flags = bytes[8];
        let unknown = flags & CRITICAL_FLAGS & !KNOWN_CRITICAL_FLAGS;
        if unknown != 0 {
            return Err(DecodeError::UnknownCriticalFlags { message_type, flags: unknown });
        }
        let fd_count = bytes[9];
        if usize::from(fd_count) > MAX_FDS_PER_FRAME {
            return Err(DecodeError::TooManyFds { message_type, fd_count });
        }
        Ok(FrameHeader { message_type, body_bytes, flags, fd_count })
    }
}
