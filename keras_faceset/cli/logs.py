"""TensorFlow's log lines off unless --verbose."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def _stderr_fd_to(file) -> Iterator[None]:
    """Point file descriptor 2, where C++ libraries write, at `file` for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_tensorflow() -> None:
    """Import TensorFlow with its logging off: ``TF_CPP_MIN_LOG_LEVEL=3`` for its C++ log
    (replacing a value set elsewhere, e.g. by importing JAX; ``--verbose`` keeps it), its
    import-time lines (oneDNN notice, CUDA probing: written before it reads that variable)
    swallowed, or shown if the import fails, and its and absl's Python loggers at ERROR."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with tempfile.TemporaryFile() as captured:
        try:
            with _stderr_fd_to(captured):
                import tensorflow as tf
        except BaseException:
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
    from absl import logging as absl_logging

    tf.get_logger().setLevel("ERROR")
    absl_logging.set_verbosity(absl_logging.ERROR)
