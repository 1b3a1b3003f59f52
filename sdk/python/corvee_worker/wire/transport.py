"""The Unix-socket side of the wire: finding the worker's socket from
CORVEE_WORKER_FD, sending and receiving frames with their fds (SCM_RIGHTS),
and payload fds (sealed memfds; reading and mapping received ones).

A frame's fds travel with the sendmsg() call that sends the frame's first
byte, and that call starts at that byte; the receiver queues fds in arrival
order and each frame takes as many as its header says (see FrameDecoder).
"""

import array
import fcntl
import mmap
import os
import socket
import stat

from .errors import PayloadError, WorkerSocketError
from .frames import MAX_FDS_PER_FRAME

__all__ = [
    "WORKER_FD",
    "WORKER_FD_ENV",
    "worker_socket_from_env",
    "send_with_fds",
    "send_frame",
    "recv_with_fds",
    "recv_into",
    "sealed_memfd",
    "read_payload",
    "map_payload",
]

#: The environment variable naming the worker's socket fd.
WORKER_FD_ENV = "CORVEE_WORKER_FD"
#: The fd the supervisor puts the worker's socket on.
WORKER_FD = 3

_FD_SIZE = array.array("i").itemsize
_ALL_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def worker_socket_from_env(environ=None):
    """The worker's protocol socket, from the fd CORVEE_WORKER_FD names. Makes
    it close-on-exec so programs the worker starts do not inherit it (a
    grandchild holding it would hide the worker's exit from the supervisor)."""
    environ = os.environ if environ is None else environ
    value = environ.get(WORKER_FD_ENV)
    if value is None:
        raise WorkerSocketError(
            f"{WORKER_FD_ENV} is not set: this program is a corvee worker and must be started "
            "by the corvee supervisor, which passes it a socket"
        )
    try:
        fd = int(value.strip())
        if fd < 0:
            raise ValueError
    except ValueError:
        raise WorkerSocketError(f"{WORKER_FD_ENV}={value!r} is not a file descriptor number") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as error:
        raise WorkerSocketError(f"{WORKER_FD_ENV}={fd} does not name an open socket: {error}") from None
    if not stat.S_ISSOCK(mode):
        raise WorkerSocketError(f"{WORKER_FD_ENV}={fd} does not name an open socket: it is not a socket")
    os.set_inheritable(fd, False)
    return socket.socket(fileno=fd)


def send_with_fds(sock, data, fds=()):
    """One sendmsg() of `data` with `fds` attached (never raising SIGPIPE;
    a gone peer is BrokenPipeError). Returns the bytes sent, possibly fewer
    than given; the fds always go with the first byte."""
    fds = list(fds)
    if len(fds) > MAX_FDS_PER_FRAME:
        raise ValueError(f"{len(fds)} fds in one frame; at most {MAX_FDS_PER_FRAME}")
    ancillary = []
    if fds:
        if not data:
            raise ValueError("fds need at least one byte to travel with")
        ancillary.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds)))
    return sock.sendmsg([data], ancillary, socket.MSG_NOSIGNAL)


def send_frame(sock, frame, fds=()):
    """Sends one whole frame on a blocking socket, its fds with its first
    byte. The caller keeps (and closes) its own copies of the fds."""
    view = memoryview(frame)
    sent = send_with_fds(sock, view, fds)
    while sent < len(view):
        sent += sock.send(view[sent:], socket.MSG_NOSIGNAL)


def recv_with_fds(sock, size):
    """One recvmsg() of up to `size` bytes. Returns (data, fds, truncated):
    fds are close-on-exec (MSG_CMSG_CLOEXEC); `truncated` means the peer sent
    more than MAX_FDS_PER_FRAME fds in one message (the excess is closed).
    Empty data means the peer closed its end."""
    data, ancillary, flags, _ = sock.recvmsg(
        size, socket.CMSG_SPACE(MAX_FDS_PER_FRAME * _FD_SIZE), socket.MSG_CMSG_CLOEXEC
    )
    fds = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
            fds.extend(received)
    truncated = bool(flags & socket.MSG_CTRUNC) or len(fds) > MAX_FDS_PER_FRAME
    for extra in fds[MAX_FDS_PER_FRAME:]:
        os.close(extra)
    return data, fds[:MAX_FDS_PER_FRAME], truncated


def recv_into(sock, decoder, size=64 << 10):
    """Reads once from `sock` into a FrameDecoder, queueing any fds. Returns
    the bytes read; 0 means the peer closed its end (call decoder.finish())."""
    data, fds, truncated = recv_with_fds(sock, size)
    decoder.feed(data)
    if truncated:
        decoder.note_fds_truncated()
    decoder.feed_fds(fds)
    return len(data)


def sealed_memfd(name, data):
    """A close-on-exec memfd holding `data`, sealed against writing, growing,
    shrinking and further sealing, ready to send as a payload fd."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        os.ftruncate(fd, len(view))
        written = 0
        while written < len(view):
            written += os.pwrite(fd, view[written:], written)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _ALL_SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_payload_file(fd, length):
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        kinds = (
            (stat.S_ISDIR, "a directory"),
            (stat.S_ISFIFO, "a pipe"),
            (stat.S_ISSOCK, "a socket"),
            (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"),
        )
        kind = next((name for test, name in kinds if test(info.st_mode)), "an unknown kind of file")
        raise PayloadError(f"a payload fd must be a regular file or a memfd, not {kind}")
    if info.st_size < length:
        raise PayloadError(f"the payload fd holds {info.st_size} bytes but the message announces {length}")


def read_payload(fd, length, max_bytes):
    """The first `length` bytes of a received payload fd, read with pread so
    the file offset (shared with the sender) never moves. Refuses payloads
    over `max_bytes` before reading anything."""
    if length > max_bytes:
        raise PayloadError(f"the payload of {length} bytes exceeds the limit of {max_bytes} bytes")
    _check_payload_file(fd, length)
    chunks = []
    read = 0
    while read < length:
        chunk = os.pread(fd, min(length - read, 16 << 20), read)
        if not chunk:
            raise PayloadError(f"the payload fd holds {read} bytes but the message announces {length}")
        chunks.append(chunk)
        read += len(chunk)
    return b"".join(chunks)


def map_payload(fd, length):
    """Maps the first `length` bytes of a sealed memfd read-only, without
    copying (an mmap object; empty bytes for an empty payload). Refuses files
    not sealed against writing and shrinking, which could change or vanish
    under the mapping; read those with read_payload instead."""
    _check_payload_file(fd, length)
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        seals = 0
    missing = [
        name
        for flag, name in ((fcntl.F_SEAL_WRITE, "writing"), (fcntl.F_SEAL_SHRINK, "shrinking"))
        if not seals & flag
    ]
    if missing:
        raise PayloadError(
            f"the payload fd is not sealed against {' and '.join(missing)}; only a sealed memfd "
            "can be mapped safely (read it with read_payload instead)"
        )
    if length == 0:
        return b""
    return mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
