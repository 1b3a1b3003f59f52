"""corvee_worker: write corvee workers in Python, with the standard library
only. For now this holds the wire layer (corvee_worker.wire); the worker
runtime -- handler registration, progress, checkpoints, interruption --
will sit beside it."""

__version__ = "0.1.0"

#: How this SDK names itself in its hello.
SDK_NAME = f"corvee-worker-python {__version__}"
