"""A Python protocol worker for corvee-supervisor's tests, built on the SDK's
wire layer (standard library only; the test sets PYTHONPATH to sdk/python).

Jobs: `noop` completes; `hash` answers `crc32=XXXXXXXX length=N fd=BOOL` for
its payload, read from the payload fd when one came (so the test can see the
payload arrived as an fd, unchanged). On shutdown it says goodbye; on EOF it
exits."""

import os
import sys
import zlib

from corvee_worker.wire import (
    DEFAULT_MAX_FRAME_BYTES,
    HANDSHAKE_MAX_FRAME_BYTES,
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    WORKER,
    Capabilities,
    Complete,
    FrameDecoder,
    Goodbye,
    Hello,
    Job,
    Shutdown,
    Welcome,
    encode_frame,
    read_payload,
    recv_into,
    send_frame,
    worker_socket_from_env,
)


def main():
    sock = worker_socket_from_env()
    hello = Hello(
        protocol_version=PROTOCOL_VERSION,
        min_protocol_version=MIN_PROTOCOL_VERSION,
        worker_name="python-test-worker",
        job_kinds=["noop", "hash"],
        capabilities=Capabilities(fd_payloads=True, checkpoints=False, interrupt=False),
        window=2,
        max_frame_bytes=DEFAULT_MAX_FRAME_BYTES,
        sdk="corvee-supervisor tests",
    )
    send_frame(sock, encode_frame(hello, HANDSHAKE_MAX_FRAME_BYTES))
    decoder = FrameDecoder(DEFAULT_MAX_FRAME_BYTES, receiving_as=WORKER)
    peer_max = HANDSHAKE_MAX_FRAME_BYTES
    while True:
        received = decoder.next_message()
        if received is None:
            if recv_into(sock, decoder) == 0:
                return
            continue
        with received:
            message = received.message
            if isinstance(message, Welcome):
                peer_max = message.max_frame_bytes
            elif isinstance(message, Job):
                result = run(received, message)
                reply = Complete(job_id=message.job_id, attempt=message.attempt, result=result)
                send_frame(sock, encode_frame(reply, peer_max))
            elif isinstance(message, Shutdown):
                send_frame(sock, encode_frame(Goodbye(reason="shutdown"), peer_max))
                return
            else:
                print(f"python test worker: unexpected {message!r}", file=sys.stderr)
                sys.exit(1)


def run(received, job):
    if job.kind == "noop":
        return None
    if job.payload_fd is not None:
        fd = received.take_fd(job.payload_fd)
        try:
            payload = read_payload(fd, job.payload_length, 256 << 20)
        finally:
            os.close(fd)
    else:
        payload = job.payload
    text = f"crc32={zlib.crc32(payload):08x} length={len(payload)} fd={'true' if job.payload_fd is not None else 'false'}"
    return text.encode()


if __name__ == "__main__":
    main()
