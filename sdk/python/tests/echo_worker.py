"""A worker process for corvee-proto's cross-language test (not a unittest
module): it finds its socket through CORVEE_WORKER_FD, says hello, and for
each job answers with the payload reversed -- inline if the job's payload
was inline, as a sealed memfd if it came as an fd -- plus a progress, a
checkpoint and a log line. On shutdown it says goodbye and exits."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from corvee_worker import SDK_NAME  # noqa: E402
from corvee_worker.wire import (  # noqa: E402
    DEFAULT_MAX_FRAME_BYTES,
    HANDSHAKE_MAX_FRAME_BYTES,
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    WORKER,
    Capabilities,
    Checkpoint,
    Complete,
    FrameDecoder,
    Goodbye,
    Hello,
    Job,
    Log,
    Progress,
    Shutdown,
    Welcome,
    encode_frame,
    read_payload,
    recv_into,
    sealed_memfd,
    send_frame,
    worker_socket_from_env,
)


def main():
    sock = worker_socket_from_env()
    if os.get_inheritable(sock.fileno()):
        raise SystemExit("the worker socket must be close-on-exec")
    hello = Hello(
        protocol_version=PROTOCOL_VERSION,
        min_protocol_version=MIN_PROTOCOL_VERSION,
        worker_name="python-echo",
        job_kinds=["reverse"],
        capabilities=Capabilities(fd_payloads=True, checkpoints=True, interrupt=True),
        window=4,
        max_frame_bytes=DEFAULT_MAX_FRAME_BYTES,
        sdk=SDK_NAME,
    )
    send_frame(sock, encode_frame(hello, HANDSHAKE_MAX_FRAME_BYTES))
    decoder = FrameDecoder(DEFAULT_MAX_FRAME_BYTES, receiving_as=WORKER)
    peer_max = HANDSHAKE_MAX_FRAME_BYTES
    while True:
        received = decoder.next_message()
        if received is None:
            if recv_into(sock, decoder) == 0:
                decoder.finish()
                raise SystemExit("the supervisor went away")
            continue
        with received:
            message = received.message
            if isinstance(message, Welcome):
                peer_max = message.max_frame_bytes
            elif isinstance(message, Job):
                answer(sock, received, message, peer_max)
            elif isinstance(message, Shutdown):
                send_frame(sock, encode_frame(Goodbye(reason=message.reason), peer_max))
                return
            else:
                raise SystemExit(f"unexpected {message!r}")


def answer(sock, received, job, peer_max):
    def send(message, fds=()):
        send_frame(sock, encode_frame(message, peer_max), fds)

    if job.payload_fd is not None:
        fd = received.take_fd(job.payload_fd)
        if os.get_inheritable(fd):
            raise SystemExit("a received payload fd must be close-on-exec")
        try:
            payload = read_payload(fd, job.payload_length, 64 << 20)
        finally:
            os.close(fd)
    else:
        payload = job.payload
    send(Progress(job_id=job.job_id, attempt=job.attempt, done=len(payload), total=len(payload)))
    send(Checkpoint(job_id=job.job_id, attempt=job.attempt, checkpoint=b"done"))
    send(Log(job_id=job.job_id, attempt=job.attempt, level="info", text=f"reversed {len(payload)} bytes"))
    result = payload[::-1]
    if job.payload_fd is not None:
        memfd = sealed_memfd("result", result)
        try:
            send(Complete(job_id=job.job_id, attempt=job.attempt, result_fd=0, result_length=len(result)), [memfd])
        finally:
            os.close(memfd)
    else:
        send(Complete(job_id=job.job_id, attempt=job.attempt, result=result))


if __name__ == "__main__":
    main()
