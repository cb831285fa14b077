"""A new user's first two commands, on a copy of the project with no ../shared and no network:
`make train` (the default experiment, shrunk) and then `make translate` without naming the run."""

import re
import shutil
import subprocess
import sys

import pytest

from translator.config import PROJECT_ROOT

pytestmark = pytest.mark.slow

# Loaded by every Python process of the test: any attempt to open a network connection is
# recorded in a file (and refused), so the test can fail on it even if the code catches the error.
NO_NETWORK = """
import socket

def _refuse(*args, **kwargs):
    with open({log!r}, "a") as log:
        log.write(repr(args[:2]) + "\\n")
    raise OSError("network disabled by the out-of-the-box test")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
"""

SHRINK = [  # the default experiment with a tiny model and a few steps
    "data.max_pairs=400",
    "tokenizer.vocab_size=400",
    "model.num_layers=1",
    "model.d_model=32",
    "model.dff=64",
    "train.epochs=2",
    "train.steps_per_epoch=4",
    "train.validation_steps=2",
    "train.tensorboard=false",
]

NOISE = (
    "cuInit",
    "cudart_stub",
    "absl::InitializeLog",
    "normalizer.cc",
    "oneDNN custom operations",
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project in a folder with no ../shared beside it."""
    root = tmp_path_factory.mktemp("fresh")
    copy = root / "project"
    skip = (".venv", ".git", "checkpoints", "prepared", "outputs", "multirun", "__pycache__",
            ".*_cache")  # fmt: skip
    shutil.copytree(PROJECT_ROOT, copy, ignore=shutil.ignore_patterns(*skip))
    (copy / "checkpoints").mkdir()
    assert not (root / "shared").exists()
    guard = root / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NO_NETWORK.format(log=str(root / "network.log")))
    return copy, guard, root / "network.log"


def run_script(project, name, *overrides, text=None):
    copy, guard, _ = project
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(copy),
        "PYTHONPATH": f"{guard}:{copy}",  # the copy's package, not the installed checkout
        "TRANSLATOR_TEXT": text or "",
    }
    return subprocess.run(
        [sys.executable, copy / "scripts" / f"{name}.py", *overrides],
        capture_output=True, cwd=copy, env=env, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(project):
    return run_script(project, "train", *SHRINK)


def test_default_training_runs_offline_from_the_shipped_corpus(project, trained):
    copy, _, network_log = project
    log = trained.stdout.decode() + trained.stderr.decode()
    assert trained.returncode == 0, log[-2000:]
    run = copy / "checkpoints" / "tatoeba_es_en-small"
    assert (run / "metrics.json").exists() and (run / "averaged.weights.h5").exists()
    assert "data: 400 training pairs, 400 validation pairs" in log  # data.max_pairs of each
    assert (copy / "prepared").is_dir()  # prepared by itself, in the project's own folder
    assert not network_log.exists(), network_log.read_text()
    # A log, not a terminal: one line per epoch (ours), no Keras progress lines, no native noise.
    assert len(re.findall(r"INFO\] epoch \d+: ", log)) == 2
    assert not re.search(r"\d+/\d+ - \d+s", log)
    assert not [word for word in NOISE if word in log], log[-2000:]


def test_translate_finds_the_run_by_itself(project, trained):
    copy, _, network_log = project
    assert trained.returncode == 0
    done = run_script(project, "translate", text="¿Dónde está la estación de tren?")
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr[-2000:]
    run = copy / "checkpoints" / "tatoeba_es_en-small"
    # A briefly trained model may loop on the sentence: that is warned about, nothing else.
    notes = [line for line in stderr.splitlines()
             if line.strip() and "reached its length limit without ending" not in line]  # fmt: skip
    assert len(notes) == 1 and notes[0].startswith(f"using the latest finished run: {run} ")
    assert len(done.stdout.decode().splitlines()) == 1  # one translation line
    assert not network_log.exists(), network_log.read_text()


def test_no_finished_run_is_one_clear_line(tmp_path):
    done = subprocess.run(
        [sys.executable, PROJECT_ROOT / "scripts" / "translate.py", f"paths.checkpoints={tmp_path}",
         "text=hola"], capture_output=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        f"error: no finished run under {tmp_path}: train one with `make train`, "
        "or give one with RUN=checkpoints/<run> (run_dir=...)"
    )
