"""GPU set-up for exporting or serving in-process: memory growth or a memory cap, and a log line
saying which device TensorFlow will actually use."""

from __future__ import annotations

import logging
import warnings

import tensorflow as tf

logger = logging.getLogger(__name__)


def configure_gpu(
    memory_growth: bool = True, memory_limit: int | None = None, require_gpu: bool = False
) -> list:
    """Configure every visible GPU and return the logical devices TensorFlow will run on.

    Must run before TensorFlow first uses a GPU (a RuntimeError says so otherwise).

    Args:
        memory_growth: allocate GPU memory as needed instead of all of it at start-up.
        memory_limit: cap each GPU at this many MiB (a logical device of that size); takes
            precedence over `memory_growth`, which TensorFlow cannot combine with a cap.
        require_gpu: warn (RuntimeWarning) when no GPU is visible; the CPU is used anyway.

    Returns:
        The logical GPU devices, or the logical CPU devices when there is no GPU.
    """
    if memory_limit is not None and not memory_limit > 0:
        raise ValueError(f"memory_limit must be a positive number of MiB, got {memory_limit!r}.")
    gpus = tf.config.list_physical_devices("GPU")
    try:
        for gpu in gpus:
            if memory_limit is not None:
                config = tf.config.LogicalDeviceConfiguration(memory_limit=int(memory_limit))
                tf.config.set_logical_device_configuration(gpu, [config])
            elif memory_growth:
                tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError as error:
        raise RuntimeError(
            "configure_gpu must be called before TensorFlow uses the GPU "
            f"(call it first thing in the process): {error}"
        ) from error
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if not gpus and require_gpu:
        warnings.warn(
            "a GPU was required but TensorFlow sees none (no CUDA device or driver); "
            "running on the CPU.",
            RuntimeWarning,
            stacklevel=2,
        )
    logger.info("TensorFlow runs on %s", ", ".join(device.name for device in devices))
    return devices
