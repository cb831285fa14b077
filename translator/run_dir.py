"""The run directory: what a training run leaves behind and everything inference reads.

One folder per run (`checkpoints/<run_name>` by default):

    config.yaml          the resolved config (data, tokenizer, model, train and decode settings)
    tokenizer/           the source and target SentencePiece models (`TokenizerPair.save`)
    data.json            the prepared training data it trained on (folders and fingerprints)
    origin.json          the run it was fine-tuned from (`train.init_from`): folder, weights file
    model.json           the Transformer's constructor arguments
    last.weights.h5      weights after the latest epoch
    best.weights.h5      weights with the best validation score (`train.select_by`)
    averaged.weights.h5  mean of the last `train.average_last` epochs (when set)
    epochs/              the weights of those epochs
    backup/              Keras BackupAndRestore state, for resuming; removed when the run ends
    logs/                TensorBoard
    history.jsonl        one line of metrics per epoch
    metrics.json         final figures, written when training ends
    eval/ plots/ export/ what `evaluate`, `plot` and `export` write
    .lock                held by the command writing the run (`RunDir.locked`): its pid, host,
                         command line and start time

A run is finished when it has metrics.json and no backup/. Only this module spells these names.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from translator.atomic import write_atomic
from translator.errors import RunDirError, first_line

WEIGHTS = {
    "best": "best.weights.h5",
    "last": "last.weights.h5",
    "averaged": "averaged.weights.h5",
}
# `weights=` choices, each a list of files tried in order.
WEIGHT_CHOICES = {
    "auto": ["averaged", "best", "last"],
    "best": ["best", "last"],
    "last": ["last"],
    "averaged": ["averaged"],
}


@dataclass(frozen=True)
class RunDir:
    """Paths and readers/writers of one run directory."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    def __str__(self) -> str:
        return str(self.path)

    # Paths.
    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def preparation_file(self) -> Path:
        return self.path / "data.json"

    @property
    def origin_file(self) -> Path:
        return self.path / "origin.json"

    @property
    def model_file(self) -> Path:
        return self.path / "model.json"

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    @property
    def backup_dir(self) -> Path:
        return self.path / "backup"

    @property
    def epochs_dir(self) -> Path:
        return self.path / "epochs"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def history_file(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    def weights_file(self, kind: str) -> Path:
        """`best`, `last` or `averaged` weights."""
        return self.path / WEIGHTS[kind]

    @staticmethod
    def weights_kind(path: Path) -> str:
        """`best`, `last` or `averaged`: which weights a file of `weights_file` holds."""
        return Path(path).name.removesuffix(".weights.h5")

    def epoch_weights_file(self, epoch: int) -> Path:
        return self.epochs_dir / f"epoch_{epoch:04d}.weights.h5"

    def epoch_weights_files(self) -> list[Path]:
        """The kept per-epoch weights, oldest first."""
        return sorted(self.epochs_dir.glob("epoch_*.weights.h5"))

    # State.
    def is_finished(self) -> bool:
        return self.metrics_file.exists() and not self.backup_dir.exists()

    def resumed_epochs(self) -> int:
        """Epochs an interrupted run finished (0 for a new run)."""
        metadata = self.backup_dir / "training_metadata.json"
        if not metadata.exists():
            return 0
        return int(json.loads(metadata.read_text())["epoch"])

    @property
    def run_state_file(self) -> Path:
        """What an interrupted run had set beyond Keras's backup (`RunBackup`)."""
        return self.backup_dir / "run_state.json"

    def resumed_state(self) -> dict:
        """The run state an interrupted run saved with its backup ({} for a new run)."""
        if not self.run_state_file.exists():
            return {}
        return json.loads(self.run_state_file.read_text())

    def choose_weights(self, which: str = "auto") -> Path:
        """`best` (lowest validation loss; falls back to last), `last`, `averaged`, or `auto`:
        averaged when the run wrote it, else best."""
        if which not in WEIGHT_CHOICES:
            raise RunDirError(f"weights={which!r}: expected auto, best, last or averaged")
        names = [WEIGHTS[kind] for kind in WEIGHT_CHOICES[which]]
        for name in names:
            if (self.path / name).exists():
                return self.path / name
        raise RunDirError(
            f"{self.path}: incomplete run directory, no {' or '.join(names)} "
            "(did training finish an epoch?)"
        )

    def check_complete(self) -> None:
        """Everything inference needs besides the weights, or a RunDirError naming what is not."""
        if not self.path.is_dir():
            raise RunDirError(f"{self.path}: run directory not found")
        from translator.tokenizer import TokenizerPair  # TensorFlow: only when it is needed

        missing = [p for p in (self.config_file, self.model_file) if not p.exists()]
        missing += TokenizerPair.missing_files(self.tokenizer_dir)
        missing = [str(p.relative_to(self.path)) for p in missing]
        if missing:
            raise RunDirError(
                f"{self.path}: incomplete run directory, missing {', '.join(missing)}"
            )

    # The lock.
    @contextmanager
    def locked(self, command: str | None = None) -> Iterator[None]:
        """Hold the run's lock while the block writes the run: a second command that would
        write it meanwhile (a second `make train` of the same run) gets a RunDirError naming
        the lock file and its owner, instead of mixing its files with the first one's.

        The lock is an exclusive `flock` on `.lock`, which holds the owner's pid, host,
        `command` (default: this command line) and start time for that message. The kernel
        releases a flock when its owner ends however it ends (SIGKILL, a lost machine with the
        run on NFS), so a lock file whose flock is free is stale: it is taken over, with a
        warning on stderr naming its owner. No pid is guessed alive or dead (pids are reused,
        and a pid on another host cannot be checked). The file is removed when the block ends,
        exceptions and KeyboardInterrupt included.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = self._take_lock(command or " ".join(sys.argv))
        try:
            yield
        finally:
            self._release_lock(fd)

    def _take_lock(self, command: str) -> int:
        """The open, flocked lock file, with this process's details written into it."""
        for _ in range(10):  # its owner may remove the file between our open and our flock
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _lock_owner(fd)
                os.close(fd)
                raise RunDirError(
                    f"{self.lock_file}: the run is in use by {owner}; wait for that command "
                    "to end, or give this one another run_name=..."
                ) from None
            if _is_file(fd, self.lock_file):
                break
            os.close(fd)  # we locked a file its owner had just released and removed
        else:
            raise RunDirError(f"{self.lock_file}: could not take the run's lock (it kept moving)")
        if os.fstat(fd).st_size:
            print(f"warning: {self.lock_file}: taking over the lock left by {_lock_owner(fd)}, "
                  "which ended without releasing it", file=sys.stderr)  # fmt: skip
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode("utf-8"), 0)
        os.fsync(fd)
        return fd

    def _release_lock(self, fd: int) -> None:
        try:
            if _is_file(fd, self.lock_file):
                self.lock_file.unlink()
        finally:
            os.close(fd)  # releases the flock

    # Reading and writing.
    def load_config(self) -> DictConfig:
        try:
            return OmegaConf.load(self.config_file)
        except Exception as error:  # noqa: BLE001 - YAML and OmegaConf errors of any kind
            message = f"{self.config_file}: not a readable config ({first_line(error)})"
            raise RunDirError(message) from None

    def save_config(self, cfg: DictConfig) -> None:
        """The fully resolved config, so inference needs nothing but this folder."""
        write_atomic(self.config_file, OmegaConf.to_yaml(cfg, resolve=True))

    def save_preparation(self, record: dict) -> None:
        """Which preparations (`translator.data.prepare`) the run trains on."""
        write_atomic(self.preparation_file, json.dumps(record, indent=2))

    def save_origin(self, record: dict) -> None:
        """The run this one was fine-tuned from (`translator.training.adapt`)."""
        write_atomic(self.origin_file, json.dumps(record, indent=2))

    def load_model_settings(self) -> dict:
        try:
            return json.loads(self.model_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RunDirError(f"{self.model_file}: not valid JSON ({error})") from None

    def save_model_settings(self, settings: dict) -> None:
        write_atomic(self.model_file, json.dumps(settings, indent=2))

    def save_metrics(self, metrics: dict) -> None:
        write_atomic(self.metrics_file, json.dumps(metrics, indent=2))

    def history(self) -> list[dict]:
        """Every epoch's logged metrics, across resumes, read tolerantly: a line a crash cut short
        is skipped, and an epoch logged twice (by a run of older code killed between its
        history line and its backup) keeps its last line. No history yet: []."""
        if not self.history_file.exists():
            return []
        records = {}
        text = self.history_file.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "epoch" in record:
                records[record["epoch"]] = record
        return list(records.values())

    def remove_backup(self) -> None:
        if self.backup_dir.exists():
            shutil.rmtree(self.backup_dir)

    def append_history(self, record: dict) -> None:
        """One JSON line, flushed to disk before training goes on (a crash keeps every epoch
        logged before it). It starts a line of its own after a last line a crash cut short."""
        line = json.dumps(record).encode("utf-8") + b"\n"
        with self.history_file.open("a+b") as f:  # writes go to the end, whatever is read
            if not _ends_a_line(f):
                line = b"\n" + line  # the last line was cut short: it stays on its own
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def complete_history(self) -> None:
        """Append the epoch line an interrupted run backed up but did not log: the backup's run
        state holds it, as the history line is written after the backup (killed in between)."""
        record = self.resumed_state().get("history")
        if record and record["epoch"] not in {r["epoch"] for r in self.history()}:
            self.append_history(record)


def _is_file(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is the file `path` names now."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _lock_owner(fd: int) -> str:
    """The owner a lock file names, in words, on one line."""
    try:
        owner = json.loads(os.pread(fd, 65536, 0))
        where = f"pid {owner['pid']} on {owner['host']}"
        command = " ".join(str(owner.get("command", "")).split())
        return f"{where} ({command}, since {owner.get('started')})"
    except (ValueError, KeyError, TypeError):
        return "another process (starting, or its details unreadable)"


def _ends_a_line(f) -> bool:
    """Whether the binary file `f` is empty or ends with a newline."""
    if not f.seek(0, os.SEEK_END):
        return True
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b"\n"


def latest_finished(checkpoints: Path) -> RunDir:
    """The most recently finished run under `checkpoints` (runs in progress are skipped)."""
    runs = [RunDir(p) for p in Path(checkpoints).glob("*") if p.is_dir()]
    finished = [run for run in runs if run.is_finished()]
    if not finished:
        raise RunDirError(
            f"no finished run under {checkpoints}: train one with `make train`, "
            "or give one with RUN=checkpoints/<run> (run_dir=...)"
        )
    return max(finished, key=lambda run: run.metrics_file.stat().st_mtime)


def locate(run_dir: str | Path | None, checkpoints: str | Path) -> RunDir:
    """The run `run_dir` names, or, when it is empty, the latest finished one (said on stderr)."""
    if run_dir:
        return RunDir(Path(run_dir))
    run = latest_finished(Path(checkpoints))
    finished = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.metrics_file.stat().st_mtime))
    print(f"using the latest finished run: {run} (finished {finished})", file=sys.stderr)
    return run
