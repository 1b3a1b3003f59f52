"""The worker runtime's tests: a Worker served by an in-process fake supervisor."""
