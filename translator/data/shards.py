"""Prepared training data: TFRecord shards of token ids plus an index, written once, streamed.

A preparation is a folder `<cache>/<corpus>-<fingerprint>/` holding `shard-NNNNN.tfrecord`
files and `index.json` (written last: a folder without it is not a preparation). Each record is
a `tf.train.Example` holding up to RECORD_PAIRS pairs: `source` and `target` (int64 lists, the
ids of the pairs one after another, START and END included) with `source_lengths` and
`target_lengths`; with `text` (sampled segmentations, `tokenizer.sample_nbest_size`) also the
sentences, `source_text` and `target_text`, which training tokenizes anew every pass.

`pair_stream` reads the shards without counting anything or holding the corpus: shard order
shuffled per pass (seeded), several shards read at once, pairs in the order read (the
training pipeline shuffles them in a bounded buffer).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from translator.errors import CorpusError
from translator.tokenizer import END_ID, with_start_end

INDEX = "index.json"
RECORD_PAIRS = 16  # pairs per record: few protos to build, fine-grained shard balance
FORMAT = 1
READ_CYCLE = 4  # shards read at once


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.tfrecord"


def encode_record(source: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray],
                  texts: tuple[list[str], list[str]] | None = None) -> bytes:  # fmt: skip
    """One record of pairs, each side given as (ids one pair after another, lengths), with
    their sentences when `texts` = (sources, targets)."""

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    feature = {}
    for key, (values, lengths) in (("source", source), ("target", target)):
        feature[key], feature[f"{key}_lengths"] = ints(values), ints(lengths)
    if texts is not None:
        for key, sentences in zip(("source_text", "target_text"), texts, strict=True):
            encoded = [s.encode("utf-8") for s in sentences]
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=encoded))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


RECORD_SPEC = {
    "source": tf.io.RaggedFeature(tf.int64),
    "target": tf.io.RaggedFeature(tf.int64),
    "source_lengths": tf.io.RaggedFeature(tf.int64),
    "target_lengths": tf.io.RaggedFeature(tf.int64),
}
TEXT_SPEC = {
    "source_text": tf.io.RaggedFeature(tf.string),
    "target_text": tf.io.RaggedFeature(tf.string),
}


def decode_ids(record: tf.Tensor):
    """A record's pairs as two ragged int32 tensors (pairs, None)."""
    parsed = tf.io.parse_single_example(record, RECORD_SPEC)

    def side(key):
        ids = tf.cast(parsed[key], tf.int32)
        return tf.RaggedTensor.from_row_lengths(ids, parsed[f"{key}_lengths"])

    return side("source"), side("target")


def decode_texts(record: tf.Tensor):
    """A record's sentences (pairs,), (pairs,) when it holds them."""
    parsed = tf.io.parse_single_example(record, TEXT_SPEC)
    return parsed["source_text"], parsed["target_text"]


@dataclass
class Prepared:
    """A finished preparation: its folder and index.

    The index holds `pairs`, `source_tokens`, `target_tokens`, `dropped` (by reason),
    `length_histogram` (pairs by max(source, target) length, START and END included),
    `shards` (file name, pairs and bytes of each), `fingerprint` and what it was made from.
    """

    folder: str
    index: dict

    @classmethod
    def load(cls, folder: str) -> Prepared:
        """The preparation in `folder`, checked: every shard present at its recorded size.

        Raises:
            CorpusError: a missing or damaged index or shard, named.
        """
        path = posixpath.join(folder, INDEX)
        try:
            with tf.io.gfile.GFile(path, "r") as f:
                index = json.loads(f.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CorpusError(
                f"{path}: damaged ({error}); delete {folder} to prepare again"
            ) from None
        prepared = cls(folder, index)
        for shard in index["shards"]:
            file = posixpath.join(folder, shard["file"])
            if not tf.io.gfile.exists(file):
                raise CorpusError(f"{file}: shard missing; delete {folder} to prepare again")
            size = tf.io.gfile.stat(file).length
            if size != shard["bytes"]:
                raise CorpusError(
                    f"{file}: damaged shard ({size} bytes, the index says {shard['bytes']}); "
                    f"delete {folder} to prepare again"
                )
        return prepared

    @property
    def pairs(self) -> int:
        return int(self.index["pairs"])

    @property
    def histogram(self) -> np.ndarray:
        return np.asarray(self.index["length_histogram"], dtype=np.int64)

    @property
    def has_text(self) -> bool:
        return bool(self.index["settings"]["text"])

    def shard_files(self, worker: int = 0, workers: int = 1) -> list[str]:
        """The non-empty shards a worker reads: every `workers`-th, from the `worker`-th, so
        workers' shards are disjoint and together the whole corpus."""
        files = [posixpath.join(self.folder, s["file"]) for s in self.index["shards"] if s["pairs"]]
        if workers > len(files):
            raise CorpusError(
                f"{self.folder}: {len(files)} non-empty shards for {workers} workers; prepare "
                f"with data.shards of at least {workers} (and enough pairs to fill them)"
            )
        return files[worker::workers]


def pair_stream(prepared: Prepared, seed: int, passes: int | None = None, worker: int = 0,
                workers: int = 1, tokenizers=None) -> tf.data.Dataset:  # fmt: skip
    """(source_ids, target_ids) pairs of a preparation, pass after pass (endless when `passes`
    is None): each pass reads the worker's shards in an order shuffled by (seed, pass),
    READ_CYCLE at a time, record by record. With `tokenizers` (a sampling pair) and shards
    that hold the sentences, each pass tokenizes them anew (START/END added, over-long pairs
    dropped or cut as the preparation did)."""
    files = tf.constant(prepared.shard_files(worker, workers))
    cycle = min(READ_CYCLE, len(prepared.shard_files(worker, workers)))

    def one_pass(number):
        order = tf.random.experimental.stateless_shuffle(
            files, seed=tf.stack([tf.constant(seed, tf.int64), number])
        )
        return tf.data.Dataset.from_tensor_slices(order).interleave(
            tf.data.TFRecordDataset, cycle_length=cycle, block_length=1,
            num_parallel_calls=cycle, deterministic=True,
        )  # fmt: skip

    numbers = tf.data.Dataset.counter() if passes is None else tf.data.Dataset.range(passes)
    records = numbers.flat_map(one_pass)
    if tokenizers is not None and prepared.has_text:
        settings = prepared.index["settings"]
        retokenize = retokenizer(tokenizers, settings["max_tokens"], settings["truncate"])
        pairs = records.map(decode_texts, num_parallel_calls=tf.data.AUTOTUNE).map(retokenize)
    else:
        pairs = records.map(decode_ids, num_parallel_calls=tf.data.AUTOTUNE)
    return pairs.map(padded, num_parallel_calls=tf.data.AUTOTUNE).unbatch().map(unpadded)


def padded(source: tf.RaggedTensor, target: tf.RaggedTensor):
    return source.to_tensor(), source.row_lengths(), target.to_tensor(), target.row_lengths()


def unpadded(source, source_length, target, target_length):
    return source[:source_length], target[:target_length]


def retokenizer(tokenizers, max_tokens: int, truncate: bool):
    """A record's sentences -> ragged ids with START/END, within max_tokens (cut or dropped)."""

    def tokenize(source, target):
        source = with_start_end(tokenizers.source.tokenize(source))
        target = with_start_end(tokenizers.target.tokenize(target))
        if truncate:
            return cut(source, max_tokens), cut(target, max_tokens)
        fits = (source.row_lengths() <= max_tokens) & (target.row_lengths() <= max_tokens)
        return tf.ragged.boolean_mask(source, fits), tf.ragged.boolean_mask(target, fits)

    return tokenize


def cut(ids: tf.RaggedTensor, max_tokens: int) -> tf.RaggedTensor:
    """Rows longer than max_tokens keep their first max_tokens - 1 ids and end with END."""
    trimmed = ids[:, :max_tokens]
    long = ids.row_lengths() > max_tokens
    last = tf.boolean_mask(trimmed.row_limits() - 1, long)
    ends = tf.fill(tf.shape(last), tf.constant(END_ID, trimmed.dtype))
    return trimmed.with_values(tf.tensor_scatter_nd_update(trimmed.values, last[:, None], ends))
