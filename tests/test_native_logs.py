"""The scripts' stderr filter: native start-up noise dropped, everything else kept, in order."""

import os
import subprocess
import sys

from translator.config import PROJECT_ROOT

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796093321.370770    2413 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1796093321.372878    2413 cudart_stub.cc:31] Could not find cuda drivers",
    "E0000 00:00:1796093323.323248    2413 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
    "E0000 00:00:1796093600.940210    2645 util.cc:131] oneDNN supports DT_INT64 only on platforms",
    "normalizer.cc(51) LOG(INFO) precompiled_charsmap is empty. use identity normalization.",
]
KEPT = [
    "E0000 00:00:1796093323.323248    2413 op_kernel.cc:1830] OP_REQUIRES failed: out of memory",
    "a line of native output that is not noise",
]
PROGRAM = f"""
import os, sys
from translator.native_logs import filter_native_stderr
filter_native_stderr()
lines = {NOISE + KEPT!r}
for line in lines:
    os.write(2, (line + "\\n").encode())  # as native code writes: straight to descriptor 2
sys.stderr.write("python's own stderr\\n")
"""


def run(verbose: str) -> list[str]:
    env = {**os.environ, "TRANSLATOR_VERBOSE": verbose, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stderr.decode().splitlines()


def test_native_noise_is_dropped_and_the_rest_kept_in_order():
    lines = run("")
    assert [line for line in lines if line in NOISE] == []
    assert [line for line in lines if line in KEPT] == KEPT
    assert "python's own stderr" in lines


def test_verbose_keeps_everything():
    lines = run("1")
    assert [line for line in lines if line in NOISE + KEPT] == NOISE + KEPT
