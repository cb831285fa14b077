"""The package's CPU allocator setting: memory freed by one op is reused by the next."""

import os
import subprocess
import sys
import textwrap

from translator.config import PROJECT_ROOT

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
    if allocator_setting is not None:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = allocator_setting
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def test_importing_the_package_makes_tensorflow_reuse_freed_cpu_memory():
    reused = faults_per_op(None)  # the package's default
    fresh = faults_per_op("false")  # glibc: every 192 MB block mapped and faulted in anew
    print(f"page faults per 192 MB op: package default {reused:.0f}, glibc {fresh:.0f}")
    assert fresh > 0 and reused < 0.01 * fresh
