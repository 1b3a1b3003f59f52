"""The wire layer's tests: MessagePack, frames, golden vectors, sockets and fds."""
