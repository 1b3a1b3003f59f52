"""The MessagePack codec: exact shortest encodings at every width boundary,
round trips, and clear refusals of what it does not support."""

import unittest

from corvee_worker.wire import msgpack
from corvee_worker.wire.msgpack import MsgpackError, packb, unpackb


class ExactEncodings(unittest.TestCase):
    def check(self, value, expected_hex):
        encoded = packb(value)
        self.assertEqual(encoded.hex(), expected_hex, f"encoding of {value!r}")
        self.assertEqual(unpackb(encoded), value)

    def test_integers_use_the_shortest_form(self):
        cases = [
            (0, "00"),
            (127, "7f"),
            (128, "cc80"),
            (255, "ccff"),
            (256, "cd0100"),
            (65535, "cdffff"),
            (65536, "ce00010000"),
            (2**32 - 1, "ceffffffff"),
            (2**32, "cf0000000100000000"),
            (2**64 - 1, "cfffffffffffffffff"),
            (-1, "ff"),
            (-32, "e0"),
            (-33, "d0df"),
            (-128, "d080"),
            (-129, "d1ff7f"),
            (-32768, "d18000"),
            (-32769, "d2ffff7fff"),
            (-(2**31), "d280000000"),
            (-(2**31) - 1, "d3ffffffff7fffffff"),
            (-(2**63), "d38000000000000000"),
        ]
        for value, expected in cases:
            with self.subTest(value=value):
                self.check(value, expected)

    def test_nil_booleans_and_floats(self):
        self.check(None, "c0")
        self.check(False, "c2")
        self.check(True, "c3")
        self.check(1.5, "cb3ff8000000000000")
        self.assertEqual(unpackb(bytes.fromhex("ca3fc00000")), 1.5, "float32 is read")

    def test_strings_use_the_shortest_length_prefix(self):
        for length, prefix in [(0, "a0"), (31, "bf"), (32, "d920"), (255, "d9ff"), (256, "da0100"), (65536, "db00010000")]:
            with self.subTest(length=length):
                value = "x" * length
                encoded = packb(value)
                self.assertEqual(encoded[: len(prefix) // 2].hex(), prefix)
                self.assertEqual(unpackb(encoded), value)
        self.check("é", "a2c3a9")

    def test_bytes_are_bin_with_the_shortest_length_prefix(self):
        for length, prefix in [(0, "c400"), (255, "c4ff"), (256, "c50100"), (65536, "c600010000")]:
            with self.subTest(length=length):
                value = bytes(range(256)) * (length // 256) + bytes(length % 256)
                encoded = packb(value)
                self.assertEqual(encoded[: len(prefix) // 2].hex(), prefix)
                self.assertEqual(unpackb(encoded), value)
        self.assertEqual(packb(bytearray(b"\x01")), b"\xc4\x01\x01")
        self.assertEqual(packb(memoryview(b"\x01")), b"\xc4\x01\x01")

    def test_arrays_and_maps(self):
        self.check([], "90")
        self.check([1, "a", None], "9301a161c0")
        self.check({}, "80")
        self.check({"a": 1}, "81a16101")
        self.assertEqual(packb(list(range(16)))[:3].hex(), "dc0010")
        self.assertEqual(packb({f"k{i}": i for i in range(16)})[:3].hex(), "de0010")
        self.assertEqual(packb((1, 2)), packb([1, 2]), "tuples encode as arrays")
        self.assertEqual(unpackb(packb(list(range(70000)))), list(range(70000)))
        big_map = {f"k{i}": i for i in range(70000)}
        self.assertEqual(packb(big_map)[:1].hex(), "df")
        self.assertEqual(unpackb(packb(big_map)), big_map)

    def test_maps_keep_their_order(self):
        self.assertEqual(packb({"b": 1, "a": 2}).hex(), "82a16201a16102")
        self.assertEqual(list(unpackb(bytes.fromhex("82a16201a16102"))), ["b", "a"])


class Refusals(unittest.TestCase):
    def check_encode(self, value, mentions):
        with self.assertRaises(MsgpackError) as caught:
            packb(value)
        self.assertIn(mentions, str(caught.exception))

    def check_decode(self, hex_bytes, mentions):
        with self.assertRaises(MsgpackError) as caught:
            unpackb(bytes.fromhex(hex_bytes))
        self.assertIn(mentions, str(caught.exception))

    def test_unsupported_values_are_refused_by_name(self):
        self.check_encode({1, 2}, "cannot encode a value of type set")
        self.check_encode(object(), "type object")
        self.check_encode(2**64, "above 2**64-1")
        self.check_encode(-(2**63) - 1, "below -2**63")
        self.check_encode({1: "x"}, "map keys must be strings")
        nested = []
        for _ in range(40):
            nested = [nested]
        self.check_encode(nested, "nest deeper than 32")

    def test_bad_bytes_are_refused_by_name(self):
        self.check_decode("c1", "0xc1")
        self.check_decode("d40102", "ext")
        self.check_decode("c70100", "ext")
        self.check_decode("cd01", "needs 2 more bytes")
        self.check_decode("a3616263ff", "1 bytes follow")
        self.check_decode("a1ff", "not UTF-8")
        self.check_decode("810102", "map keys must be strings")
        self.check_decode("82a161" "01" "a161" "02", "appears twice")
        self.check_decode("81", "announces 1 entries but the data ends at offset 1")
        self.check_decode("81a178", "offset 3 needs 1 more bytes")
        self.check_decode("dd" "ffffffff", "needs 1 more bytes")
        self.check_decode("91" * 40 + "c0", "nest deeper than 32")
        self.check_decode("", "needs 1 more bytes")

    def test_unpack_checks_depth_exactly_like_the_rust_side(self):
        # 32 nested arrays are fine; 33 are not.
        self.assertEqual(unpackb(bytes.fromhex("91" * 31 + "90")), _nest(31))
        self.check_decode("91" * 32 + "90", "nest deeper")

    def test_marker_names(self):
        self.assertEqual(msgpack.marker_name(0x91), "an array")
        self.assertEqual(msgpack.marker_name(0xC4), "bin")


def _nest(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


if __name__ == "__main__":
    unittest.main()
