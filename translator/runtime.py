"""Where and how TensorFlow computes: devices and distribution strategy, precision, CPU threads.

Used by training and by the benchmarks; `describe_devices` is the device line a run logs first.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf
from omegaconf import DictConfig

from translator.errors import TranslatorError

log = logging.getLogger(__name__)

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def select_strategy(train: DictConfig) -> tf.distribute.Strategy:
    """The tf.distribute strategy `train.distribution` asks for.

    auto: MirroredStrategy over the GPUs when there are several, else the default strategy.
    none: the default strategy. mirrored: MirroredStrategy over `train.devices` (or every GPU).
    multi_worker: MultiWorkerMirroredStrategy configured by the TF_CONFIG environment variable.
    """
    kind = train.distribution
    if kind == "multi_worker":  # before anything starts TensorFlow's runtime
        return multi_worker_strategy(train.worker_timeout_seconds)
    if kind == "auto":
        kind = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "none"
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        devices = list(train.devices or []) or None
        cross_device_ops = None  # TensorFlow's choice: NCCL all-reduce on GPUs
        if devices and all("cpu" in d.lower() for d in devices):
            # The collective all-gather of sparse (embedding) gradients needs equal row counts on
            # every replica, which token batches do not have; reduce on one device instead.
            cross_device_ops = tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross_device_ops)
    raise TranslatorError(
        f"train.distribution={kind!r}: expected auto, none, mirrored or multi_worker"
    )


def multi_worker_strategy(timeout_seconds: float | None) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy over the cluster TF_CONFIG describes. A collective that waits
    longer than `timeout_seconds` for another worker (one that died) fails instead of hanging."""
    if "TF_CONFIG" not in os.environ:
        raise TranslatorError(
            "train.distribution=multi_worker needs the TF_CONFIG environment variable (the "
            "cluster's workers and this one's index): `make train-workers N=2` sets it on one "
            "machine; docs/distributed.md shows it for several"
        )
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_seconds)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def worker_role(strategy: tf.distribute.Strategy) -> tuple[int, bool]:
    """(this worker's index, whether it is the chief, which alone writes the run directory).

    As in TensorFlow's multi-worker guide: the `chief` task, or worker 0 when there is none.
    Outside a multi-worker cluster: (0, True)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 0, True
    index = int(resolver.task_id or 0)
    if resolver.task_type == "chief":
        return index, True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return index, resolver.task_type == "worker" and index == 0 and not has_chief


def across_workers(strategy: tf.distribute.Strategy, value: float, op: str = "MAX") -> float:
    """The largest (op MAX) or smallest (MIN) of this worker's `value` and every other's: a
    collective, so every worker must ask at the same point."""
    local = tf.constant([value], tf.float32)
    values = strategy.gather(strategy.run(lambda: tf.identity(local)), axis=0)
    return float(tf.reduce_max(values) if op == "MAX" else tf.reduce_min(values))


def agreed_clock(strategy: tf.distribute.Strategy, start: float) -> Callable[[], float]:
    """Seconds since `start` as the slowest worker reads them, so that every worker takes the
    same time-budget decisions. Every worker must read it at the same points."""
    return lambda: across_workers(strategy, time.perf_counter() - start)


def set_threads(threads: int | None) -> None:
    """Limit TensorFlow's CPU thread pools (e.g. two runs sharing a machine, one core each)."""
    if not threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:  # TensorFlow already started in this process (tests, notebooks)
        log.warning("train.threads=%s ignored: TensorFlow is already initialized", threads)


def set_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise TranslatorError(f"train.precision={precision!r}: expected one of {PRECISIONS}")
    keras.mixed_precision.set_global_policy(precision)


def cpu_features(cpuinfo: str | None = None) -> dict:
    """The CPU's model name and vector extensions, from /proc/cpuinfo (empty where there is none).

    Throughput differs several-fold between CPUs with and without AVX-512, so logs and benchmark
    reports name them: figures from two machines are then never mistaken for one.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's entry
    flags = set(fields.get("flags", "").split())
    vector = sorted(
        f for f in flags if f in ("avx", "avx2", "fma") or f.startswith(("avx512", "amx"))
    )
    return {"cpu_model": fields.get("model name", "unknown"), "vector_extensions": vector}


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def choose_precision(precision: str, cpu: dict, gpu_capabilities: list) -> tuple[str, str]:
    """The policy `train.precision` names, and why; `auto` resolved for this machine.

    auto: mixed_bfloat16 where the hardware computes bfloat16 natively (GPUs of compute
    capability 8.0 or later; CPUs with avx512_bf16 or AMX), float32 otherwise: emulated bfloat16
    is slower than float32, and float16 is never used on a CPU.

    Args:
        precision: train.precision.
        cpu: `cpu_features()`.
        gpu_capabilities: (major, minor) compute capability of each visible GPU.
    """
    if precision != "auto":
        return precision, "as configured"
    if gpu_capabilities:
        if min(gpu_capabilities) >= (8, 0):
            return "mixed_bfloat16", "auto: the GPUs compute bfloat16 natively"
        return "float32", "auto: a GPU without native bfloat16 (compute capability below 8.0)"
    native = sorted(set(BF16_CPU_FLAGS) & set(cpu.get("vector_extensions", [])))
    if native:
        return "mixed_bfloat16", f"auto: the CPU computes bfloat16 natively ({', '.join(native)})"
    return "float32", "auto: the CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16)"


def gpu_capabilities(gpus: list) -> list[tuple[int, int]]:
    details = [tf.config.experimental.get_device_details(g) for g in gpus]
    return [tuple(d.get("compute_capability", (0, 0))) for d in details]


def precision_warning(precision: str, cpu: dict, gpus: int) -> str | None:
    """A warning when mixed_bfloat16 trains on a CPU without bfloat16 instructions, else None.

    Without avx512_bf16 or AMX the CPU has no bfloat16 arithmetic and the kernels emulate it, so
    the policy that trains faster on the machines a config was tuned on may be slower there.
    """
    if precision != "mixed_bfloat16" or gpus or not cpu:
        return None
    if set(BF16_CPU_FLAGS) & set(cpu["vector_extensions"]):
        return None
    return (
        "train.precision=mixed_bfloat16 on a CPU without avx512_bf16 or amx_bf16: bfloat16 is "
        "emulated here and may train slower than train.precision=float32"
    )


def describe_devices(
    strategy: tf.distribute.Strategy, train: DictConfig, gpus: list, cpu: dict, precision: str
) -> str:
    cpu = f"{cpu['cpu_model']}, {' '.join(cpu['vector_extensions'])}" if cpu else "unknown CPU"
    where = f"{len(gpus)} GPU(s): {[g.name for g in gpus]}" if gpus else "CPU only (no GPU visible)"
    where += f"; CPU: {cpu}"
    replicas = strategy.num_replicas_in_sync
    return (
        f"devices: {where}; strategy {type(strategy).__name__} with {replicas} replica(s); "
        f"precision {precision}; XLA {'on' if train.jit_compile else 'off'}"
    )


def start_runtime(train: DictConfig, seed: int) -> tf.distribute.Strategy:
    """Threads, seed, precision and strategy as `train` asks; logs the device line."""
    set_threads(train.threads)
    strategy = select_strategy(train)  # first: a multi-worker one configures TensorFlow's start
    keras.utils.set_random_seed(seed)
    gpus, cpu = tf.config.list_physical_devices("GPU"), cpu_features()
    precision, why = choose_precision(train.precision, cpu, gpu_capabilities(gpus))
    set_precision(precision)
    log.info(describe_devices(strategy, train, gpus, cpu, f"{precision} ({why})"))
    if warning := precision_warning(precision, cpu, len(gpus)):
        log.warning(warning)
    return strategy
