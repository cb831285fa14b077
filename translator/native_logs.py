"""Keep the native libraries' start-up chatter off the terminal of the command-line scripts.

On a CPU-only machine TensorFlow's C++ code logs, through absl and before absl is initialised (so
TF_CPP_MIN_LOG_LEVEL does not reach them), lines such as `cudart_stub.cc:31] Could not find cuda
drivers`, `port.cc:153] oneDNN custom operations are on` and `cuda_platform.cc:52] failed call to
cuInit`; tensorflow-text's SentencePiece op logs `normalizer.cc(51) LOG(INFO) precompiled_charsmap
is empty` every time a tokenizer is built. Native code writes them to file descriptor 2, out of
Python's reach, so `filter_native_stderr` puts a pipe there and a thread that forwards every line
except those (`NOISE`). Python's own `sys.stderr` (errors, warnings, progress bars) goes to the
terminal directly. TRANSLATOR_VERBOSE=1 (`make ... VERBOSE=1`) leaves stderr untouched.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "  # absl INFO and WARNING lines
    rb"|E\d{4} [\d:.]+ +\d+ cuda_\w+\.cc:\d+\] "  # CUDA probing on a machine without CUDA
    rb"|E\d{4} [\d:.]+ +\d+ util\.cc:\d+\] oneDNN supports DT_INT64 only"
    rb"|normalizer\.cc\(\d+\) LOG\(INFO\) "
)

_installed = False


def verbose() -> bool:
    return os.environ.get("TRANSLATOR_VERBOSE", "").lower() in ("1", "true", "yes")


def filter_native_stderr() -> None:
    """Route file descriptor 2 through a filter that drops `NOISE` lines (once per process)."""
    global _installed
    if _installed or verbose():
        return
    _installed = True
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(  # noqa: SIM115 - lives as long as the process
        os.dup(terminal), "w", buffering=1, encoding="utf-8", errors="backslashreplace"
    )
    pump = threading.Thread(target=_forward, args=(read_end, terminal), daemon=True)
    pump.start()

    def restore():
        os.dup2(terminal, 2)  # closes the pipe's write end: the pump reads to its end and stops
        pump.join(timeout=2)

    atexit.register(restore)


def _forward(read_end: int, terminal: int) -> None:
    with open(read_end, "rb") as pipe:
        for line in pipe:
            if not NOISE.match(line):
                os.write(terminal, line)
