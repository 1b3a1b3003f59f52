//! The Unix-socket glue: creating the socket pair, placing the worker's
//! end on [`WORKER_FD`], finding it again in the worker, and reading and
//! writing frames with their fds (`sendmsg`/`recvmsg` with SCM_RIGHTS).
//!
//! How fds are matched to frames on a stream socket: a frame's fds are
//! attached to the `sendmsg` call that sends the frame's first byte, and
//! that call starts at that byte. The kernel delivers them with the
//! `recvmsg` that reads that byte, so by the time a whole frame is in the
//! decoder its fds are in the decoder's queue, behind those of earlier
//! frames; the header's `fd_count` says how many to take.

use std::io;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::fs::FileType;
use rustix::io::{Errno, FdFlags, IoSlice, IoSliceMut};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use crate::{FrameDecoder, SendBuffer, WorkerSocketError, MAX_FDS_PER_FRAME, WORKER_FD, WORKER_FD_ENV};

/// Room for one frame's fds in a control message.
const CONTROL_BYTES: usize = rustix::cmsg_space!(ScmRights(MAX_FDS_PER_FRAME));

/// A connected pair of Unix stream sockets, both close-on-exec: one for the
/// supervisor, one to hand to the worker with [`install_worker_fd`].
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?)
}

/// Places `socket` on fd [`WORKER_FD`] without close-on-exec, so the
/// program about to be executed inherits it there. Makes at most two
/// system calls and does not allocate.
///
/// # Safety
///
/// Call only in a child process between `fork` and `exec` (for example
/// from `std::os::unix::process::CommandExt::pre_exec`): it replaces
/// whatever fd [`WORKER_FD`] was, which is sound only when nothing in the
/// process will use that fd again.
pub unsafe fn install_worker_fd(socket: BorrowedFd<'_>) -> io::Result<()> {
    if socket.as_raw_fd() == WORKER_FD {
        rustix::io::fcntl_setfd(socket, FdFlags::empty())?;
    } else {
        // SAFETY: the caller guarantees nothing else uses WORKER_FD; the
        // handle only names the dup2 target and is never dropped (closed).
        let mut target = ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(WORKER_FD) });
        rustix::io::dup2(socket, &mut target)?;
    }
    Ok(())
}

/// In a worker: takes the protocol socket named by [`WORKER_FD_ENV`],
/// checks that it is a socket, and sets close-on-exec on it so that
/// programs the worker starts do not inherit it (a grandchild holding it
/// would keep the supervisor from seeing the worker's end close).
///
/// # Safety
///
/// Takes ownership of the fd: call it once, early, before anything else in
/// the process could have opened or taken that fd number.
pub unsafe fn worker_socket_from_env() -> Result<OwnedFd, WorkerSocketError> {
    let value = std::env::var_os(WORKER_FD_ENV).ok_or(WorkerSocketError::NotSet)?;
    let value = value.to_string_lossy();
    let fd: i32 = value
        .trim()
        .parse()
        .ok()
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| WorkerSocketError::NotANumber { value: value.clone().into_owned() })?;
    let not_a_socket = |reason: String| WorkerSocketError::NotASocket { fd, reason };
    // SAFETY: the caller guarantees the fd is the inherited socket (or not
    // open, which fstat reports as EBADF).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let stat = rustix::fs::fstat(borrowed).map_err(|errno| not_a_socket(format!("fstat: {errno}")))?;
    let file_type = FileType::from_raw_mode(stat.st_mode);
    if file_type != FileType::Socket {
        return Err(not_a_socket(format!("it is a {file_type:?}")));
    }
    rustix::io::fcntl_setfd(borrowed, FdFlags::CLOEXEC)
        .map_err(|errno| not_a_socket(format!("setting close-on-exec: {errno}")))?;
    // SAFETY: checked open above; the caller guarantees nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `bytes` with `fds` attached in one `sendmsg` (retrying on
/// EINTR, never raising SIGPIPE). Returns how many bytes were sent: on a
/// stream socket possibly fewer than given, but the fds always go with the
/// first byte. Panics if fds are given with no bytes or more than
/// [`MAX_FDS_PER_FRAME`] of them.
pub fn send_with_fds(socket: impl AsFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    assert!(fds.len() <= MAX_FDS_PER_FRAME, "{} fds in one frame", fds.len());
    assert!(fds.is_empty() || !bytes.is_empty(), "fds need at least one byte to travel with");
    let mut space = [MaybeUninit::<u8>::uninit(); CONTROL_BYTES];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        let pushed = control.push(SendAncillaryMessage::ScmRights(fds));
        assert!(pushed, "control buffer sized for MAX_FDS_PER_FRAME");
    }
    loop {
        match rustix::net::sendmsg(&socket, &[IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL) {
            Err(Errno::INTR) => continue,
            result => return Ok(result?),
        }
    }
}

/// What one [`recv_with_fds`] call got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvOutcome {
    /// Bytes read; 0 means the peer closed its end.
    pub bytes: usize,
    /// More fds came than [`MAX_FDS_PER_FRAME`] (the kernel truncated the
    /// control data, or its alignment slack let a few more through, which
    /// were closed here): a protocol violation by the peer.
    pub fds_truncated: bool,
}

/// Reads into `buffer` with one `recvmsg` (retrying on EINTR), appending
/// any fds that arrive to `fds`. Received fds are close-on-exec
/// (`MSG_CMSG_CLOEXEC`), so no child started meanwhile inherits them.
pub fn recv_with_fds(socket: impl AsFd, buffer: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<RecvOutcome> {
    let mut space = [MaybeUninit::<u8>::uninit(); CONTROL_BYTES];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = loop {
        match rustix::net::recvmsg(&socket, &mut [IoSliceMut::new(buffer)], &mut control, RecvFlags::CMSG_CLOEXEC) {
            Err(Errno::INTR) => continue,
            result => break result?,
        }
    };
    let mut count = 0;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received_fds) = message {
            for fd in received_fds {
                count += 1;
                if count <= MAX_FDS_PER_FRAME {
                    fds.push(fd);
                }
            }
        }
    }
    Ok(RecvOutcome {
        bytes: received.bytes,
        fds_truncated: received.flags.contains(ReturnFlags::CTRUNC) || count > MAX_FDS_PER_FRAME,
    })
}

impl FrameDecoder {
    /// Reads once from `socket` straight into the decoder's buffer and
    /// queues any fds that came along. Returns the bytes read: 0 means the
    /// peer closed its end (call [`finish`](FrameDecoder::finish)). On a
    /// non-blocking socket with nothing to read this is an error of kind
    /// `WouldBlock`. Protocol problems (truncated control data) are
    /// reported by the next [`next_frame`](FrameDecoder::next_frame).
    pub fn recv_from(&mut self, socket: impl AsFd) -> io::Result<usize> {
        let mut fds = Vec::new();
        let outcome = recv_with_fds(socket, self.read_buffer(), &mut fds)?;
        self.commit_read(outcome.bytes);
        if outcome.fds_truncated {
            self.note_fds_truncated();
        }
        self.feed_fds(fds);
        Ok(outcome.bytes)
    }
}

impl SendBuffer {
    /// Writes pending frames to `socket` until all are written (`Ok`) or
    /// the socket is full (an error of kind `WouldBlock`; what was written
    /// stays written, call again when the socket is writable). Each frame
    /// with fds starts its own `sendmsg`, which carries them; the fds are
    /// closed on this side once the kernel has them. A peer that has gone
    /// shows as `BrokenPipe`.
    pub fn send_to(&mut self, socket: impl AsFd) -> io::Result<()> {
        let socket = socket.as_fd();
        while self.sent < self.bytes.len() {
            let stop = self.next_stop();
            let chunk = &self.bytes[self.sent..stop];
            let carries_fds = self.pending_fds.front().is_some_and(|pending| pending.at == self.sent);
            let written = if carries_fds {
                let pending = self.pending_fds.front().expect("checked above");
                let fds: Vec<BorrowedFd<'_>> = pending.fds.iter().map(AsFd::as_fd).collect();
                send_with_fds(socket, chunk, &fds)?
            } else {
                send_with_fds(socket, chunk, &[])?
            };
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            if carries_fds {
                // The kernel holds its own references now; close ours.
                self.pending_fds.pop_front();
            }
            self.sent += written;
        }
        self.bytes.clear();
        self.sent = 0;
        Ok(())
    }
}
