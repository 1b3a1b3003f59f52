"""The wire layer of the corvee worker SDK: MessagePack, frames, messages and
the socket with its fds, exactly as docs/protocol.md specifies them. The
worker runtime (handlers, progress, interrupts) builds on this package."""

from . import msgpack
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _error_names
from .frames import *  # noqa: F401,F403
from .frames import __all__ as _frame_names
from .messages import *  # noqa: F401,F403
from .messages import __all__ as _message_names
from .transport import *  # noqa: F401,F403
from .transport import __all__ as _transport_names

#: The protocol version this package speaks, and the oldest it still speaks.
PROTOCOL_VERSION = 1
MIN_PROTOCOL_VERSION = 1

__all__ = (
    ["msgpack", "PROTOCOL_VERSION", "MIN_PROTOCOL_VERSION"]
    + list(_error_names)
    + list(_frame_names)
    + list(_message_names)
    + list(_transport_names)
)
