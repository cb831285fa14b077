"""The training stream's position: where a resumed run takes the data up, without re-reading.

`StreamFeed` owns the one iterator over a run's endless training stream and hands its batches to
Keras (`dataset()`). With every backup it saves the iterator's state (tf.data checkpoints the
whole pipeline: shard, record, shuffle buffer, length buckets, random generators) together with
the batches Keras had already taken but not yet trained on; `restore` puts both back. A resumed
run therefore trains on exactly the batches the uninterrupted run would have, and reads only
what it had not read: the cost of resuming does not grow with how far the run had got.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections import deque
from pathlib import Path

import numpy as np
import tensorflow as tf

from translator.errors import TranslatorError

log = logging.getLogger(__name__)

PREFIX = "data-"  # backup/data-<optimizer step>/: the stream's position at that update


class StreamFeed:
    """The batches of `stream` for `model.fit`, through one iterator whose position is saved.

    Keras takes batches ahead of the step it trains (prefetching); `trained()` (called after
    every training batch) tells the feed which have been trained on. Batches taken by a fit
    that ended before training them come first in the next fit (a run resumed mid-epoch runs
    two fits).
    """

    def __init__(self, stream: tf.data.Dataset, worker: int = 0, folder: Path | None = None):
        options = tf.data.Options()
        # Maps that read a variable (the BiT switch) or run a sampling tokenizer hold state
        # outside the pipeline: it is not saved (the trainer restores the variable itself).
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
        self.stream = stream.with_options(options)
        self.worker = worker  # each of several workers has a stream (and a position) of its own
        self.folder = folder  # where positions are saved: the run's backup/, which every
        # worker writes its own into (a worker's other files go to a temporary folder)
        self.iterator = iter(self.stream)
        self.lock = threading.Lock()
        self.handed: deque = deque()  # taken by Keras, not yet trained on
        self.replay: deque = deque()  # to hand out before reading the iterator again

    def dataset(self) -> tf.data.Dataset:
        """What `fit` trains on: the stream's batches, in order, through this feed."""
        return tf.data.Dataset.from_generator(
            self._batches, output_signature=self.stream.element_spec
        )

    def _batches(self):
        with self.lock:  # a new fit: what the last one took and did not train on comes first
            self.replay.extendleft(reversed(self.handed))
            self.handed.clear()
        while True:
            with self.lock:
                batch = self.replay.popleft() if self.replay else next(self.iterator)
                self.handed.append(batch)
            yield batch

    def trained(self) -> None:
        """One more batch trained on."""
        with self.lock:
            if self.handed:
                self.handed.popleft()

    def save(self, step: int) -> str:
        """Save the position after update `step` in `<folder>/data-<step>-worker<i>/` (complete
        before its name appears), keep the one before it (the run's state may still name it),
        remove older ones; returns the new one's name."""
        name = position_name(step, self.worker)
        final, partial = self.folder / name, self.folder / f".{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with self.lock:
            tf.train.Checkpoint(iterator=self.iterator).write(str(partial / "iterator"))
            pending = [*self.handed, *self.replay]
        flat = [np.asarray(t) for batch in pending for t in tf.nest.flatten(batch)]
        np.savez(partial / "pending.npz", *flat)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        for old in sorted(self.folder.glob(f"{PREFIX}*-worker{self.worker}"))[:-2]:
            shutil.rmtree(old, ignore_errors=True)
        return name

    def saved(self, step: int) -> Path | None:
        """This worker's position after update `step`, if it was saved."""
        folder = self.folder / position_name(step, self.worker)
        return folder if (folder / "pending.npz").exists() else None

    def restore(self, folder: Path) -> None:
        """Continue from a position `save` wrote."""
        folder = Path(folder)
        if not (folder / "pending.npz").exists():
            raise TranslatorError(f"{folder}: the data position of the backup is missing")
        tf.train.Checkpoint(iterator=self.iterator).read(str(folder / "iterator")).expect_partial()
        with np.load(folder / "pending.npz") as saved:
            flat = [tf.constant(saved[f"arr_{i}"]) for i in range(len(saved.files))]
        width = len(tf.nest.flatten(self.stream.element_spec))
        batches = [tf.nest.pack_sequence_as(self.stream.element_spec, flat[i : i + width])
                   for i in range(0, len(flat), width)]  # fmt: skip
        with self.lock:
            self.handed.clear()
            self.replay = deque(batches)
        log.info("resuming the training data at its saved position (%s; %d batches taken "
                 "ahead)", folder.name, len(batches))  # fmt: skip


def position_name(step: int, worker: int) -> str:
    return f"{PREFIX}{step:09d}-worker{worker}"
