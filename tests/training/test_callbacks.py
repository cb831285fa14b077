"""The run's callbacks at an epoch's end, on a small Keras model (no training): the history line
follows the backup, and a line a kill kept from being written is recovered from the backup."""

import errno

import keras
import pytest

from tests.conftest import tiny_run
from translator.run_dir import RunDir
from translator.training.callbacks import EpochSummary, RunBackup, make_callbacks

LOGS = {"loss": 2.0, "val_loss": 2.5, "tokens": 100.0}


def epoch_end(tmp_path, epoch: int = 0):
    """The callbacks of a tiny run's config in `tmp_path`, through one epoch's end."""
    cfg = tiny_run(tmp_path, "train.backup_every_steps=null")
    run = RunDir(tmp_path)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    callbacks = keras.callbacks.CallbackList(make_callbacks(cfg, run), model=model)
    callbacks.on_epoch_begin(epoch)
    callbacks.on_epoch_end(epoch, dict(LOGS))
    return run


def test_no_epoch_is_logged_before_its_backup_is_saved(tmp_path, monkeypatch):
    """A backup that fails (a full disk, a kill) leaves the epoch unlogged: a restart runs it
    again and logs it once, instead of twice."""

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RunBackup, "_save_model", full_disk)
    with pytest.raises(OSError):
        epoch_end(tmp_path)
    assert RunDir(tmp_path).history() == []


def test_a_backed_up_epoch_a_kill_kept_from_the_history_is_logged_on_resuming(
    tmp_path, monkeypatch
):
    def killed(self, epoch, logs=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(EpochSummary, "on_epoch_end", killed)
    with pytest.raises(KeyboardInterrupt):
        epoch_end(tmp_path)
    run = RunDir(tmp_path)
    assert run.resumed_epochs() == 1 and run.history() == []  # backed up, not logged
    run.complete_history()
    run.complete_history()  # once only
    [record] = run.history()
    assert record["epoch"] == 1 and record["val_loss"] == 2.5 and "learning_rate" in record
    assert len(run.history_file.read_text().splitlines()) == 1


def test_an_epoch_is_backed_up_then_logged_once(tmp_path):
    run = epoch_end(tmp_path)
    assert [h["epoch"] for h in run.history()] == [1] and run.resumed_epochs() == 1
    run.complete_history()  # nothing missing: nothing appended
    assert len(run.history_file.read_text().splitlines()) == 1
