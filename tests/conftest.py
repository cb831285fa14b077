"""Shared fixtures. Tests read the real corpora from ../shared/data and compose the real configs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

# Two logical CPU devices, so MirroredStrategy can be exercised without a GPU. This must happen
# before TensorFlow initialises its devices, hence at import time of the conftest.
_cpus = tf.config.list_physical_devices("CPU")
if _cpus:
    try:
        tf.config.set_logical_device_configuration(
            _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
        )
    except RuntimeError:
        pass  # devices already initialised by an earlier import
