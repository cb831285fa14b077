"""The training stream's saved position: a resumed run reads on from where it was."""

import json
import logging

import pytest
import tensorflow as tf

from tests.conftest import TINY_BASE, compose
from tests.training.test_trainer import clocked_run
from translator.data import shards
from translator.training.trainer import train

pytestmark = pytest.mark.slow

SETTINGS = ("train.epochs=3", "train.steps_per_epoch=8", "train.backup_every_steps=3",
            "train.max_minutes=30")  # fmt: skip


def records_read(monkeypatch) -> tf.Variable:
    """A counter of the shard records the training stream decodes from now on."""
    count = tf.Variable(0, dtype=tf.int64, trainable=False)
    decode = shards.decode_ids

    def counting(record):
        with tf.control_dependencies([count.assign_add(1)]):
            return decode(tf.identity(record))

    monkeypatch.setattr(shards, "decode_ids", counting)
    return count


def test_a_run_killed_mid_epoch_reads_on_from_its_position(tmp_path, monkeypatch, caplog):
    """Killed after update 13 with a backup at update 12, the run resumes the data at the saved
    position: it reads only what its last 12 updates need, where replaying the stream from the
    start would read what the uninterrupted run read for all 24."""
    killed = clocked_run(tmp_path, "resumed", *SETTINGS, kill_at_step=13)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    state = json.loads((tmp_path / "resumed" / "backup" / "run_state.json").read_text())
    assert state["optimizer_steps"] == 12 and state["data"] == "data-000000012-worker0"
    positions = sorted(p.name for p in (tmp_path / "resumed" / "backup").glob("data-*"))
    assert positions == ["data-000000009-worker0", "data-000000012-worker0"]  # and no older

    straight_reads = records_read(monkeypatch)
    train(clocked_config(tmp_path, "straight"))
    straight = int(straight_reads.numpy())
    monkeypatch.undo()

    resumed_reads = records_read(monkeypatch)
    with caplog.at_level(logging.INFO):
        train(clocked_config(tmp_path, "resumed"))
    assert "resuming the training data at its saved position" in caplog.text
    resumed = int(resumed_reads.numpy())
    print(f"records read: uninterrupted {straight}, resumed at update 12 of 24: {resumed}")
    assert resumed < 0.75 * straight

    def history(name):
        return [json.loads(line) for line in open(tmp_path / name / "history.jsonl")]

    # The same batches as the uninterrupted run: the same target tokens every epoch.
    assert [h["tokens"] for h in history("resumed")] == [h["tokens"] for h in history("straight")]


def clocked_config(tmp_path, name):
    """The config `clocked_run` gives a run, for the same run in this process."""
    return compose(*TINY_BASE, "model=tiny", "data.max_pairs=64", "tokenizer.shared=false",
                   "tokenizer.vocab_size=1000", "train.warmup_steps=4", "train.decay=linear",
                   "train.decay_steps=auto", "train.tensorboard=false",
                   f"run_dir={tmp_path / name}", *SETTINGS)  # fmt: skip
