"""The package's CPU allocator setting: memory freed by one op is reused by the next."""

import mmap
import os
import subprocess
import sys
import textwrap

from translator.config import PROJECT_ROOT

TENSOR_BYTES = 48 * 1024 * 1024 * 4  # the probe's float32 tensor, 192 MB

# Page faults of an op that writes a fresh 192 MB tensor, once the first one has been freed.
PROBE = textwrap.dedent("""\
    import resource
    import translator
    import tensorflow as tf

    x = tf.ones([48 * 1024 * 1024])
    y = x * 2.0
    del y
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        y = x * 2.0
        del y
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
    """)


def faults_per_op(allocator_setting: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    # oneDNN, on by default where the CPU has AVX512_VNNI/BF16 or AMX, brings an allocator of its
    # own that reuses large blocks whatever the setting: off, glibc is the baseline on every CPU.
    env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    if allocator_setting is not None:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = allocator_setting
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def test_importing_the_package_selects_the_bfc_allocator_unless_overridden():
    probe = "import os, translator; print(os.environ['TF_CPU_ALLOCATOR_USE_BFC'])"

    def setting(env_value):
        env = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
        if env_value is not None:
            env["TF_CPU_ALLOCATOR_USE_BFC"] = env_value
        out = subprocess.run(
            [sys.executable, "-c", probe], env=env, cwd=PROJECT_ROOT, capture_output=True,
            text=True, check=True,
        )  # fmt: skip
        return out.stdout.strip()

    assert setting(None) == "true"
    assert setting("false") == "false"


def test_importing_the_package_makes_tensorflow_reuse_freed_cpu_memory():
    pages = TENSOR_BYTES / mmap.PAGESIZE
    reused = faults_per_op(None)  # the package's default
    fresh = faults_per_op("false")  # glibc: the 192 MB block mapped and faulted in anew every op
    print(f"page faults per 192 MB op ({pages:.0f} pages): package {reused:.0f}, glibc {fresh:.0f}")
    assert fresh > 0.5 * pages
    assert reused < 0.01 * pages
