"""The golden vectors of docs/protocol/, shared with the Rust crate: every
valid frame decodes to the fields the manifest lists and re-encodes byte for
byte; every invalid one is rejected with the error kind the manifest names,
and no fd leaks on the way."""

import unittest

from corvee_worker.wire import (
    MESSAGE_CLASSES,
    PROTOCOL_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    DecodeError,
    FrameDecoder,
    encode_frame,
    msgpack,
    parse_header,
)

from ..support import as_json, is_open, load_manifest, placeholder_fds, read_vector


class GoldenVectors(unittest.TestCase):
    def setUp(self):
        self.manifest = load_manifest()

    def test_the_manifest_is_for_this_protocol_version(self):
        self.assertEqual(self.manifest["protocol_version"], PROTOCOL_VERSION)

    def test_valid_vectors_decode_to_their_fields_and_re_encode_byte_for_byte(self):
        for vector in self.manifest["vectors"]:
            with self.subTest(file=vector["file"]):
                data = read_vector(vector["file"])
                self.assertEqual(len(data), vector["frame_bytes"])
                header = parse_header(data, PROTOCOL_MAX_FRAME_BYTES)
                self.assertEqual(header.message_type, vector["message_type"])
                self.assertEqual(header.fd_count, vector["fd_count"])
                decoder = FrameDecoder(PROTOCOL_MAX_FRAME_BYTES)
                decoder.feed(data)
                decoder.feed_fds(placeholder_fds(vector["fd_count"]))
                with decoder.next_message() as received:
                    self.assertIsNone(decoder.next_message())
                    decoder.finish()
                    message = received.message
                    self.assertEqual(message.NAME, vector["message_name"])
                    self.assertEqual(received.fd_count, vector["fd_count"])
                    fields = as_json(message.to_map())
                    self.assertEqual(fields, vector["fields"])
                    self.assertEqual(list(fields), list(vector["fields"]), "wire order of the keys")
                    generic = as_json(msgpack.unpackb(data[12:]))
                    self.assertEqual(generic, vector["fields"])
                    self.assertEqual(encode_frame(message, PROTOCOL_MAX_FRAME_BYTES), data)

    def test_every_message_type_has_a_vector(self):
        covered = {vector["message_name"] for vector in self.manifest["vectors"]}
        self.assertEqual(covered, {cls.NAME for cls in MESSAGE_CLASSES})

    def test_invalid_vectors_are_rejected_with_the_named_error(self):
        for vector in self.manifest["invalid"]:
            with self.subTest(file=vector["file"]):
                decoder = FrameDecoder(PROTOCOL_MAX_FRAME_BYTES)
                decoder.feed(read_vector(vector["file"]))
                fds = placeholder_fds(vector["fds_supplied"])
                decoder.feed_fds(fds)
                with self.assertRaises(DecodeError) as caught:
                    received = decoder.next_message()
                    self.assertIsNone(received, "an invalid vector decoded")
                    decoder.finish()
                self.assertEqual(caught.exception.kind, vector["error"], str(caught.exception))
                for fd in fds:
                    self.assertFalse(is_open(fd), "fds are closed after a decoding error")


if __name__ == "__main__":
    unittest.main()
