"""configure_gpu on a machine without a GPU (CI): CPU devices, a log line, a warning if asked."""

import logging
import warnings

import pytest
import tensorflow as tf

from keras_faceset.export import configure_gpu

pytestmark = pytest.mark.skipif(
    bool(tf.config.list_physical_devices("GPU")), reason="checks the no-GPU behaviour"
)


def test_without_a_gpu_it_returns_the_cpu_logs_it_and_warns_when_one_was_required(caplog):
    with caplog.at_level(logging.INFO, logger="keras_faceset.export.gpu"):
        with pytest.warns(RuntimeWarning, match="a GPU was required but TensorFlow sees none"):
            devices = configure_gpu(require_gpu=True, memory_limit=1024)
    assert [device.device_type for device in devices] == ["CPU"]
    assert "TensorFlow runs on /device:CPU:0" in caplog.text


def test_without_require_gpu_there_is_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert configure_gpu()[0].name == "/device:CPU:0"


def test_a_non_positive_memory_limit_is_refused():
    with pytest.raises(ValueError, match="memory_limit must be a positive number of MiB"):
        configure_gpu(memory_limit=0)
