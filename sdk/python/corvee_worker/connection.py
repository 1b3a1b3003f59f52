"""The worker's side of a connection after the handshake: what the welcome
settled, and the write half -- one lock around the socket that the reader,
the job threads, the peek thread and the heartbeat thread share, so frames
never interleave and a frame's fds travel with its first byte. The
heartbeat thread lives here too: it sends a heartbeat whenever nothing else
was sent for the welcome's interval."""

import sys
import threading
import time

from .wire import HEADER_BYTES, Heartbeat, encode_frame, send_frame

__all__ = ["Connection", "ConnectionClosed"]


class ConnectionClosed(Exception):
    """The connection is over (the supervisor went away, or goodbye was
    sent): nothing more can be said."""


class Connection:
    def __init__(self, sock, welcome, capabilities, max_payload_bytes):
        self.sock = sock
        self.capabilities = capabilities
        self.peer_max_frame_bytes = welcome.max_frame_bytes
        self.payload_fd_threshold_bytes = welcome.payload_fd_threshold_bytes
        self.max_payload_bytes = max_payload_bytes
        self._lock = threading.Condition()
        self._closed = False
        self._last_sent = time.monotonic()

    @property
    def max_field_bytes(self):
        """The most bytes of text or data that fit in one frame to the
        supervisor next to a message's other fields."""
        return max(0, self.peer_max_frame_bytes - HEADER_BYTES - 1024)

    def send(self, message, fds=()):
        """Encodes and writes one whole frame. Raises EncodeError when the
        message cannot be encoded (too large for the supervisor), and
        ConnectionClosed when the connection is over."""
        frame = encode_frame(message, self.peer_max_frame_bytes)
        with self._lock:
            self._send_locked(frame, fds)

    def _send_locked(self, frame, fds=()):
        if self._closed:
            raise ConnectionClosed()
        try:
            send_frame(self.sock, frame, fds)
        except OSError as error:
            print(f"corvee worker: writing to the supervisor failed ({error}); stopping", file=sys.stderr)
            self._closed = True
            self._lock.notify_all()
            raise ConnectionClosed() from None
        self._last_sent = time.monotonic()

    def send_last(self, message):
        """Sends `message` as the last frame: nothing is sent after it."""
        frame = encode_frame(message, self.peer_max_frame_bytes)
        with self._lock:
            try:
                self._send_locked(frame)
            finally:
                self._closed = True
                self._lock.notify_all()

    def close(self):
        """Stops all sending (the supervisor is gone)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def start_heartbeats(self, interval_seconds):
        """A daemon thread that sends a heartbeat whenever nothing was sent
        for `interval_seconds`; it ends when the connection closes."""
        # Checking four times per interval keeps the longest silence near
        # 1.25 intervals, far from the 3 after which the worker is hung.
        tick = max(interval_seconds / 4, 0.001)
        heartbeat = encode_frame(Heartbeat(), self.peer_max_frame_bytes)

        def beat():
            with self._lock:
                while not self._closed:
                    if time.monotonic() - self._last_sent >= interval_seconds:
                        try:
                            self._send_locked(heartbeat)
                        except ConnectionClosed:
                            return
                    self._lock.wait(tick)

        thread = threading.Thread(target=beat, name="corvee-heartbeat", daemon=True)
        thread.start()
        return thread
