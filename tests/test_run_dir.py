"""The run directory: the run inference picks when none is given, and how files are written."""

import json
import os
import socket
import subprocess
import sys

import pytest

from translator.atomic import save_weights_atomic
from translator.config import PROJECT_ROOT
from translator.errors import RunDirError
from translator.run_dir import RunDir, latest_finished, locate


def fake_run(checkpoints, name, mtime, finished=True, backup=False):
    run = RunDir(checkpoints / name)
    run.path.mkdir(parents=True)
    if finished:
        run.save_metrics({"epochs": 1})
        os.utime(run.metrics_file, (mtime, mtime))
    if backup:
        run.backup_dir.mkdir()
    return run


def test_latest_finished_skips_runs_in_progress_and_interrupted(tmp_path):
    fake_run(tmp_path, "old", mtime=1_000)
    newest = fake_run(tmp_path, "newest", mtime=3_000)
    fake_run(tmp_path, "training", mtime=0, finished=False)  # no metrics.json yet
    fake_run(tmp_path, "interrupted", mtime=5_000, backup=True)  # resumable, not finished
    (tmp_path / "README.md").write_text("not a run")
    assert latest_finished(tmp_path) == newest


def test_locate_says_which_run_it_chose_in_one_line(tmp_path, capsys):
    run = fake_run(tmp_path, "only", mtime=2_000)
    assert locate(None, tmp_path) == run
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"using the latest finished run: {run.path}")
    assert locate(str(tmp_path / "given"), tmp_path) == RunDir(tmp_path / "given")  # no search
    assert capsys.readouterr().err == ""


def test_no_finished_run_is_one_line_naming_the_folder(tmp_path):
    fake_run(tmp_path, "training", mtime=0, finished=False)
    with pytest.raises(RunDirError, match=f"no finished run under {tmp_path}") as error:
        locate(None, tmp_path)
    assert "\n" not in str(error.value)
    with pytest.raises(RunDirError, match="no finished run"):
        locate("", tmp_path / "missing")


def test_choose_weights_refuses_an_unknown_choice(tmp_path):
    with pytest.raises(
        RunDirError, match="weights='newest': expected auto, best, last or averaged"
    ):
        RunDir(tmp_path).choose_weights("newest")


def small_model():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.build((None, 3))
    return model


def test_averaging_lists_no_weights_a_killed_save_left_behind(tmp_path, monkeypatch):
    """A save killed after writing its temporary file but before the rename leaves that file;
    the epochs averaging reads are still only the complete ones."""
    run = RunDir(tmp_path)
    run.epochs_dir.mkdir()
    model = small_model()
    for epoch in (1, 2):
        save_weights_atomic(model, run.epoch_weights_file(epoch))
    monkeypatch.setattr(os, "replace", lambda *args: None)  # killed just before the rename
    save_weights_atomic(model, run.epoch_weights_file(3))
    monkeypatch.undo()
    assert len(os.listdir(run.epochs_dir)) == 3  # epochs 1 and 2, and the leftover of 3
    assert run.epoch_weights_files() == [run.epoch_weights_file(1), run.epoch_weights_file(2)]


def test_an_epoch_after_a_line_cut_short_is_read_back(tmp_path):
    """Killed mid-append, a run leaves a last line without its end; the next epoch's line starts
    a line of its own, so only the cut line is lost (not the next one with it)."""
    run = RunDir(tmp_path)
    for epoch in (1, 2):
        run.append_history({"epoch": epoch, "loss": 1.0 / epoch})
    with run.history_file.open("a") as f:
        f.write('{"epoch": 3, "lo')  # the kill
    for epoch in (3, 4):  # the resumed run: epoch 3 again, then 4
        run.append_history({"epoch": epoch, "loss": 1.0 / epoch})
    assert [h["epoch"] for h in run.history()] == [1, 2, 3, 4]


def test_history_reads_an_epoch_logged_twice_once_with_its_last_line(tmp_path):
    run = RunDir(tmp_path)
    assert run.history() == []  # none yet
    for epoch, loss in ((1, 2.0), (2, 1.5), (2, 1.4), (3, 1.0)):  # older code: 2 logged twice
        run.append_history({"epoch": epoch, "loss": loss})
    assert [(h["epoch"], h["loss"]) for h in run.history()] == [(1, 2.0), (2, 1.4), (3, 1.0)]


HOLD_THE_LOCK = """
import sys, time
from translator.run_dir import RunDir
with RunDir(sys.argv[1]).locked("make train"):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def lock_holder(tmp_path):
    """Another process holding the lock of the run `tmp_path / "run"` (killed at the end)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(tmp_path / "run")],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})  # fmt: skip
    assert holder.stdout.readline() == "locked\n"
    yield holder
    holder.kill()
    holder.wait()


def test_a_second_command_on_a_locked_run_is_refused_naming_the_lock_and_owner(
    tmp_path, lock_holder
):
    run = RunDir(tmp_path / "run")
    with pytest.raises(RunDirError) as error:
        with run.locked():
            pytest.fail("took a lock another process holds")
    message = str(error.value)
    assert message.startswith(f"{run.lock_file}: the run is in use by pid {lock_holder.pid} on ")
    assert socket.gethostname() in message and "(make train, since " in message
    assert "\n" not in message
    assert json.loads(run.lock_file.read_text())["pid"] == lock_holder.pid  # left as it was


def test_the_lock_of_a_killed_command_is_taken_over_with_a_warning(tmp_path, lock_holder, capsys):
    run = RunDir(tmp_path / "run")
    lock_holder.kill()  # SIGKILL: no cleanup, the lock file stays
    lock_holder.wait()
    assert run.lock_file.exists()
    with run.locked("second"):
        assert json.loads(run.lock_file.read_text())["pid"] == os.getpid()
    warning = capsys.readouterr().err
    assert warning.startswith(f"warning: {run.lock_file}: taking over the lock left by pid "
                              f"{lock_holder.pid} on ")  # fmt: skip
    assert not run.lock_file.exists()


def test_a_lock_file_naming_a_dead_process_is_stale(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    run = RunDir(tmp_path)
    owner = {"pid": int(dead), "host": socket.gethostname(), "command": "train", "started": "x"}
    run.lock_file.write_text(json.dumps(owner))
    with run.locked():
        pass
    assert f"taking over the lock left by pid {dead} on" in capsys.readouterr().err


def test_the_lock_is_released_however_the_block_ends(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.locked():
        assert run.lock_file.exists()
        with pytest.raises(RunDirError, match="the run is in use by pid"):
            with run.locked():  # a second holder, even in this process
                pass
    assert not run.lock_file.exists()
    for error in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(error):
            with run.locked():
                raise error
        assert not run.lock_file.exists()
