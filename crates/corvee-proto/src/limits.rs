//! Every bound of the protocol in one place: frame sizes, fds per frame,
//! nesting depth, and the decoder's and encoder's buffers.

/// The hard ceiling on a frame (header plus body) in this protocol version.
/// Neither side may announce a larger maximum; bigger payloads travel as
/// file descriptors.
pub const PROTOCOL_MAX_FRAME_BYTES: u32 = 64 << 20;

/// The smallest maximum a side may announce, and the largest frame anyone
/// sends before the handshake has told it the peer's maximum. The hello and
/// the welcome must fit in it.
pub const HANDSHAKE_MAX_FRAME_BYTES: u32 = 64 << 10;

/// The maximum frame size a side accepts unless configured otherwise.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 1 << 20;

/// The most file descriptors one frame may carry. Receivers size their
/// control-message buffer for this many; the kernel closes any beyond it
/// and the receiver reports the frame as broken.
pub const MAX_FDS_PER_FRAME: usize = 8;

/// The most received fds a [`FrameDecoder`](crate::FrameDecoder) holds while
/// waiting for the frames that claim them: one frame's worth still being
/// read plus one more frame's worth from the next read.
pub const MAX_QUEUED_FDS: usize = 2 * MAX_FDS_PER_FRAME;

/// The deepest nesting of maps and arrays accepted in a body. The messages
/// of this version nest three deep; the rest is room for future fields.
pub const MAX_BODY_DEPTH: usize = 32;

/// How many bytes the decoder offers to each read beyond the frame it is
/// completing.
pub const READ_CHUNK_BYTES: usize = 64 << 10;

/// How many unsent bytes a [`SendBuffer`](crate::SendBuffer) holds before it
/// refuses more frames (one frame is always accepted into an emptier
/// buffer, so a maximum-size frame still fits).
pub const DEFAULT_SEND_BUFFER_LIMIT_BYTES: usize = 8 << 20;
