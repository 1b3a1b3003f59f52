"""Tests of the corvee_worker Python SDK (run: python3 -m unittest discover -s tests -t .)."""
