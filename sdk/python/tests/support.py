"""Shared by the tests: where the golden vectors are, and how a message body
is shown as JSON in their manifest."""

import json
import os
import pathlib

#: docs/protocol/ of the repository this SDK lives in.
VECTORS_DIR = pathlib.Path(__file__).resolve().parents[3] / "docs" / "protocol"


def load_manifest():
    with open(VECTORS_DIR / "vectors.json", encoding="utf-8") as manifest:
        return json.load(manifest)


def read_vector(file):
    return (VECTORS_DIR / file).read_bytes()


def as_json(value):
    """A decoded MessagePack value as the manifest shows it: bin as {"hex": ...}."""
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, list):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    return value


def placeholder_fds(count):
    """Fds standing in for those a frame announces (/dev/null, read-only)."""
    return [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(count)]


def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
