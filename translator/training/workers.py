"""Training on several workers (`train.distribution=multi_worker`): who writes the run
directory, what a dead peer becomes, and `launch_workers`, which starts N workers on this machine.

Every worker runs the same command with its own `TF_CONFIG`. Only the chief writes the run
directory; the others write their copies to a temporary folder, removed when they end (as
TensorFlow's multi-worker guide does).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import tensorflow as tf

from translator.errors import TranslatorError, first_line
from translator.run_dir import RunDir
from translator.runtime import across_workers, worker_role

log = logging.getLogger(__name__)

# What a collective raises when a peer is gone: it timed out, or the peer's address refused.
PEER_ERRORS = (
    tf.errors.DeadlineExceededError,
    tf.errors.UnavailableError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
)


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_share(strategy: tf.distribute.Strategy) -> tuple[int, int]:
    """(this worker's index, number of workers): which shards of the training data it reads."""
    if not is_multi_worker(strategy):
        return 0, 1
    index, _ = worker_role(strategy)
    return index, strategy.cluster_resolver.cluster_spec().num_tasks("worker")


@contextmanager
def worker_run_dir(run: RunDir, strategy: tf.distribute.Strategy) -> Iterator[RunDir]:
    """`run` for the chief (or a single process), which holds the run's lock meanwhile
    (`RunDir.locked`: another command writing the run is refused); for another worker, a
    temporary run directory holding copies of what it reads from `run` (tokenizers, an
    interrupted run's backup: the run directory must be on storage every worker reads to
    resume), removed at the end. The other workers never take the lock: they write no file of
    the run, and the lock is the chief's for the whole run."""
    index, chief = worker_role(strategy)
    if chief:
        with run.locked():
            yield run
        return
    own = RunDir(tempfile.mkdtemp(prefix=f"translator-worker{index}-"))
    try:
        for part in ("tokenizer_dir", "backup_dir"):
            if getattr(run, part).is_dir():
                shutil.copytree(getattr(run, part), getattr(own, part))
        log.info("worker %d: the chief writes %s; this worker's files go to %s until it ends",
                 index, run, own)  # fmt: skip
        yield own
    finally:
        shutil.rmtree(own.path, ignore_errors=True)


@contextmanager
def peers_alive(strategy: tf.distribute.Strategy) -> Iterator[None]:
    """A collective that fails because another worker is gone becomes a one-line error."""
    try:
        yield
    except PEER_ERRORS as error:
        if not is_multi_worker(strategy):
            raise
        index, _ = worker_role(strategy)
        raise TranslatorError(
            f"worker {index}: another worker stopped responding ({first_line(error)}); run the "
            "same command again to resume from the last backup"
        ) from error


def check_same_start(strategy: tf.distribute.Strategy, run: RunDir, steps: int) -> None:
    """Every worker must resume from the same update (each reads the chief's backup)."""
    if not is_multi_worker(strategy):
        return
    low, high = (across_workers(strategy, steps, op) for op in ("MIN", "MAX"))
    if low != high:
        index, _ = worker_role(strategy)
        raise TranslatorError(
            f"worker {index}: the workers would resume from different updates ({low:.0f} to "
            f"{high:.0f}; this one {steps}): every worker must read the chief's backup in "
            f"{run.backup_dir}, so put run_dir on storage they all see"
        )


def free_ports(count: int) -> list[int]:
    """`count` distinct free localhost ports (all held open until each is chosen)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]


def tf_config(ports: list[int], index: int) -> str:
    """The TF_CONFIG of worker `index` of a cluster on localhost `ports`."""
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def launch_workers(command: Callable[[int], list[str]], workers: int,
                   timeout: float | None = None, grace: float = 60.0) -> int:  # fmt: skip
    """Run `command(i)` for each worker i < `workers` on this machine, with its TF_CONFIG, its
    output prefixed with `[worker i]`. Returns 0 when all succeed, else the first failure's
    exit code. Once one fails, the others get `grace` seconds to fail on their own (they
    report the lost peer) before they are stopped; all are stopped after `timeout` seconds."""
    ports = free_ports(workers)
    processes = [start_worker(command(i), ports, i) for i in range(workers)]
    deadline = time.monotonic() + timeout if timeout else None
    failed_at, code = None, 0
    while any(p.poll() is None for p in processes):
        now = time.monotonic()
        failures = [p.returncode for p in processes if p.returncode not in (None, 0)]
        if failures and failed_at is None:
            failed_at, code = now, failures[0]
            log.error("a worker exited with code %d; waiting up to %.0f s for the others",
                      code, grace)  # fmt: skip
        if (failed_at is not None and now - failed_at > grace) or (deadline and now > deadline):
            stop(processes)
            return code or 1
        time.sleep(0.2)
    codes = [p.returncode for p in processes]
    return next((c for c in codes if c != 0), 0)


def start_worker(command: list[str], ports: list[int], index: int) -> subprocess.Popen:
    env = {**os.environ, "TF_CONFIG": tf_config(ports, index), "GRPC_FAIL_FAST": "true"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    threading.Thread(target=relay, args=(process, f"[worker {index}] "), daemon=True).start()
    return process


def relay(process: subprocess.Popen, prefix: str) -> None:
    for line in process.stdout:
        sys.stderr.write(prefix + line)


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def worker_command(overrides: list[str], script: Path) -> list[str]:
    """The command each worker runs: the training script with `overrides`, multi-worker."""
    return [sys.executable, str(script), *overrides, "train.distribution=multi_worker"]


LAUNCHER_KEYS = ("workers", "worker_threads", "timeout_minutes")
TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train.py"


def train_on_workers(cfg, overrides: list[str], logs: Path, script: Path = TRAIN_SCRIPT
                     ) -> int:  # fmt: skip
    """`make train-workers`: `cfg.workers` processes of the training `script` with this
    command's `overrides`, each with `cfg.worker_threads` CPU threads (default: the cores
    shared out). Worker 0 is the chief; the others log in `logs`, not in the run directory."""
    logs = Path(logs)
    workers = int(cfg.workers)
    if workers < 1:
        raise TranslatorError(f"workers={workers}: expected a number >= 1")
    threads = cfg.worker_threads or max(1, (os.cpu_count() or 1) // workers)
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in LAUNCHER_KEYS]

    def command(index: int) -> list[str]:
        where = [f"hydra.run.dir={logs / f'worker{index}'}"] if index else []
        return worker_command([*kept, f"train.threads={threads}", *where], script)

    log.info("%d workers on this machine, %d CPU threads each; the chief writes %s",
             workers, threads, cfg.run_dir)  # fmt: skip
    timeout = 60 * cfg.timeout_minutes if cfg.timeout_minutes else None
    code = launch_workers(command, workers, timeout)
    if code:
        raise TranslatorError(f"training on {workers} workers failed (exit code {code})")
    return 0
