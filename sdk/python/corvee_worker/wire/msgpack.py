"""A small, strict MessagePack encoder and decoder: just the types the corvee
protocol uses, with nothing from outside the standard library.

Supported: nil, booleans, integers from -2**63 to 2**64-1, float64 (float32
is also read), str, bin, array and map. Everything else -- ext types, other
Python objects, out-of-range integers -- is refused with MsgpackError naming
what and where.

The encoder always picks the shortest form (fixint before uint8, fixstr
before str8, ...), which is what the Rust side writes too; that is what
makes frames re-encode byte for byte.
"""

import struct

__all__ = ["MsgpackError", "packb", "pack_into", "unpackb", "MAX_DEPTH"]

#: The deepest nesting of maps and arrays accepted when decoding.
MAX_DEPTH = 32

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")


class MsgpackError(ValueError):
    """A value cannot be encoded, or bytes are not the MessagePack accepted."""


def packb(value):
    """Encodes one value and returns the bytes."""
    out = bytearray()
    pack_into(out, value)
    return bytes(out)


def pack_into(out, value, _depth=1):
    """Appends the encoding of `value` to the bytearray `out`."""
    if value is None:
        out.append(0xC0)
    elif value is True:
        out.append(0xC3)
    elif value is False:
        out.append(0xC2)
    elif isinstance(value, int):
        _pack_int(out, value)
    elif isinstance(value, float):
        out.append(0xCB)
        out += _F64.pack(value)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        _pack_length(out, len(data), fixed=(0xA0, 31), markers=(0xD9, 0xDA, 0xDB), what="string")
        out += data
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        _pack_length(out, len(data), fixed=None, markers=(0xC4, 0xC5, 0xC6), what="bin")
        out += data
    elif isinstance(value, (list, tuple)):
        _check_depth(_depth)
        _pack_length(out, len(value), fixed=(0x90, 15), markers=(None, 0xDC, 0xDD), what="array")
        for item in value:
            pack_into(out, item, _depth + 1)
    elif isinstance(value, dict):
        _check_depth(_depth)
        _pack_length(out, len(value), fixed=(0x80, 15), markers=(None, 0xDE, 0xDF), what="map")
        for key, item in value.items():
            if not isinstance(key, str):
                raise MsgpackError(f"map keys must be strings, not {type(key).__name__} {key!r}")
            pack_into(out, key, _depth + 1)
            pack_into(out, item, _depth + 1)
    else:
        raise MsgpackError(f"cannot encode a value of type {type(value).__name__}: {value!r}")


def _check_depth(depth):
    if depth > MAX_DEPTH:
        raise MsgpackError(f"maps and arrays nest deeper than {MAX_DEPTH} levels")


def _pack_int(out, value):
    if value >= 0:
        if value < 0x80:
            out.append(value)
        elif value < 0x100:
            out += b"\xcc" + bytes((value,))
        elif value < 0x10000:
            out += b"\xcd" + _U16.pack(value)
        elif value < 0x100000000:
            out += b"\xce" + _U32.pack(value)
        elif value < 0x10000000000000000:
            out += b"\xcf" + _U64.pack(value)
        else:
            raise MsgpackError(f"integer {value} is above 2**64-1")
    else:
        if value >= -32:
            out.append(value & 0xFF)
        elif value >= -0x80:
            out += b"\xd0" + _I8.pack(value)
        elif value >= -0x8000:
            out += b"\xd1" + _I16.pack(value)
        elif value >= -0x80000000:
            out += b"\xd2" + _I32.pack(value)
        elif value >= -0x8000000000000000:
            out += b"\xd3" + _I64.pack(value)
        else:
            raise MsgpackError(f"integer {value} is below -2**63")


def _pack_length(out, length, fixed, markers, what):
    if fixed is not None and length <= fixed[1]:
        out.append(fixed[0] | length)
    elif markers[0] is not None and length < 0x100:
        out += bytes((markers[0], length))
    elif length < 0x10000:
        out.append(markers[1])
        out += _U16.pack(length)
    elif length < 0x100000000:
        out.append(markers[2])
        out += _U32.pack(length)
    else:
        raise MsgpackError(f"a {what} of {length} entries or bytes is too long for MessagePack")


def unpackb(data):
    """Decodes exactly one value from `data`; bytes after it are an error."""
    reader = _Reader(memoryview(data).cast("B"))
    value = reader.value(1)
    if reader.at != len(reader.data):
        raise MsgpackError(
            f"{len(reader.data) - reader.at} bytes follow the value at offset {reader.at}"
        )
    return value


_MARKER_NAMES = (
    ((0x00, 0x7F), "an integer"),
    ((0x80, 0x8F), "a map"),
    ((0x90, 0x9F), "an array"),
    ((0xA0, 0xBF), "a string"),
    ((0xC0, 0xC0), "nil"),
    ((0xC1, 0xC1), "the never-used byte"),
    ((0xC2, 0xC3), "a boolean"),
    ((0xC4, 0xC6), "bin"),
    ((0xC7, 0xC9), "an ext value"),
    ((0xCA, 0xCB), "a float"),
    ((0xCC, 0xD3), "an integer"),
    ((0xD4, 0xD8), "an ext value"),
    ((0xD9, 0xDB), "a string"),
    ((0xDC, 0xDD), "an array"),
    ((0xDE, 0xDF), "a map"),
    ((0xE0, 0xFF), "an integer"),
)


def marker_name(marker):
    """What kind of value a MessagePack marker byte starts."""
    for (low, high), name in _MARKER_NAMES:
        if low <= marker <= high:
            return name
    raise AssertionError(marker)


class _Reader:
    def __init__(self, data):
        self.data = data
        self.at = 0

    def take(self, count):
        remaining = len(self.data) - self.at
        if count > remaining:
            raise MsgpackError(
                f"a value at offset {self.at} needs {count} more bytes but only {remaining} remain"
            )
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk

    def string(self, length, offset):
        chunk = self.take(length)
        try:
            return str(chunk, "utf-8")
        except UnicodeDecodeError as error:
            raise MsgpackError(f"the string at offset {offset} is not UTF-8: {error}") from None

    def value(self, depth):
        offset = self.at
        marker = self.take(1)[0]
        if marker <= 0x7F:
            return marker
        if marker >= 0xE0:
            return marker - 0x100
        if 0xA0 <= marker <= 0xBF:
            return self.string(marker & 0x1F, offset)
        if 0x90 <= marker <= 0x9F:
            return self.array(marker & 0x0F, depth, offset)
        if 0x80 <= marker <= 0x8F:
            return self.map(marker & 0x0F, depth, offset)
        if marker == 0xC0:
            return None
        if marker == 0xC2:
            return False
        if marker == 0xC3:
            return True
        if marker == 0xCC:
            return self.take(1)[0]
        if marker == 0xCD:
            return _U16.unpack(self.take(2))[0]
        if marker == 0xCE:
            return _U32.unpack(self.take(4))[0]
        if marker == 0xCF:
            return _U64.unpack(self.take(8))[0]
        if marker == 0xD0:
            return _I8.unpack(self.take(1))[0]
        if marker == 0xD1:
            return _I16.unpack(self.take(2))[0]
        if marker == 0xD2:
            return _I32.unpack(self.take(4))[0]
        if marker == 0xD3:
            return _I64.unpack(self.take(8))[0]
        if marker == 0xCA:
            return _F32.unpack(self.take(4))[0]
        if marker == 0xCB:
            return _F64.unpack(self.take(8))[0]
        if marker == 0xD9:
            return self.string(self.take(1)[0], offset)
        if marker == 0xDA:
            return self.string(_U16.unpack(self.take(2))[0], offset)
        if marker == 0xDB:
            return self.string(_U32.unpack(self.take(4))[0], offset)
        if marker == 0xC4:
            return bytes(self.take(self.take(1)[0]))
        if marker == 0xC5:
            return bytes(self.take(_U16.unpack(self.take(2))[0]))
        if marker == 0xC6:
            return bytes(self.take(_U32.unpack(self.take(4))[0]))
        if marker == 0xDC:
            return self.array(_U16.unpack(self.take(2))[0], depth, offset)
        if marker == 0xDD:
            return self.array(_U32.unpack(self.take(4))[0], depth, offset)
        if marker == 0xDE:
            return self.map(_U16.unpack(self.take(2))[0], depth, offset)
        if marker == 0xDF:
            return self.map(_U32.unpack(self.take(4))[0], depth, offset)
        if marker == 0xC1:
            raise MsgpackError(f"byte 0xc1 at offset {offset} is not a MessagePack value")
        raise MsgpackError(
            f"an ext value (byte {marker:#04x}) at offset {offset}: "
            "this protocol uses no MessagePack ext types"
        )

    def array(self, count, depth, offset):
        _check_nesting(depth, offset)
        items = []
        for _ in range(count):
            items.append(self.value(depth + 1))
        return items

    def map(self, count, depth, offset):
        _check_nesting(depth, offset)
        result = {}
        for _ in range(count):
            key_offset = self.at
            if key_offset >= len(self.data):
                raise MsgpackError(
                    f"the map at offset {offset} announces {count} entries "
                    f"but the data ends at offset {key_offset}"
                )
            key_marker = self.data[key_offset]
            if not (0xA0 <= key_marker <= 0xBF or 0xD9 <= key_marker <= 0xDB):
                raise MsgpackError(
                    f"map keys must be strings, found {marker_name(key_marker)} "
                    f"at offset {key_offset}"
                )
            key = self.value(depth + 1)
            if key in result:
                raise MsgpackError(f"the key {key!r} appears twice in the map at offset {offset}")
            result[key] = self.value(depth + 1)
        return result


def _check_nesting(depth, offset):
    if depth > MAX_DEPTH:
        raise MsgpackError(
            f"maps and arrays nest deeper than {MAX_DEPTH} levels at offset {offset}"
        )
