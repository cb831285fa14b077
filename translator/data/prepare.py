"""The one-time preparation of training data: vocabularies and shards of token ids.

`prepare(cfg)` streams each training corpus once (`translator.data.sources`), learns the
SentencePiece vocabularies from a bounded random sample of its pairs (or reuses given ones),
tokenizes in batches with tf-text, drops pairs over `data.max_tokens` (or cuts them), over
`data.max_length_ratio`, and exact duplicates (`data.dedup`), and writes TFRecord shards with an
index (`translator.data.shards`). Memory holds a chunk of pairs, the vocabulary sample and, with
`data.dedup`, 8 bytes per distinct pair; never the corpus.

Everything is keyed by a fingerprint of what it was made from: the input files (path, size,
modification time) or TFDS split, and every setting that changes the result. Vocabularies live
in `<paths.prepared>/tokenizers/<key>/`, shards in `<paths.prepared>/<corpus>-<key>/`. A changed
input or setting gives a new key, so nothing stale is ever reused; the same key is reused as it
is. Work happens in a `.partial` folder renamed into place when complete, under a lock, so an
interrupted preparation leaves nothing that looks finished and the same command starts again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import posixpath
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from translator.data.shards import FORMAT, INDEX, RECORD_PAIRS, Prepared, encode_record, shard_name
from translator.data.sources import PairReader, is_local
from translator.errors import TranslatorError
from translator.tokenizer import END_ID, START_ID, TokenizerPair, train_tokenizers

log = logging.getLogger(__name__)

# Tokenizer settings that do not change the vocabulary a preparation learns.
TOKENIZER_FREE = ("num_threads", "sample_nbest_size", "sample_alpha", "model_dir")


@dataclass
class TrainingData:
    """What a run trains on: its tokenizers and one preparation per corpus, with its weight."""

    tokenizers: TokenizerPair
    prepared: list[Prepared]
    weights: list[float]

    def record(self) -> dict:
        """What the run directory records about the data it trained on."""
        return {"preparations": [
            {"folder": p.folder, "fingerprint": p.index["fingerprint"], "pairs": p.pairs,
             "weight": w} for p, w in zip(self.prepared, self.weights, strict=True)
        ]}  # fmt: skip


def corpus_configs(data: DictConfig) -> list[tuple[DictConfig, float]]:
    """Each training corpus as a `data` config of its own, with its sampling weight: `data`
    itself, or each of `data.corpora` (a folder of parallel text each, same languages)."""
    if not data.get("corpora"):
        return [(data, 1.0)]
    configs = []
    for number, entry in enumerate(data.corpora):
        name = entry.name or posixpath.basename(str(entry.path).rstrip("/")) or f"corpus{number}"
        own = {"kind": "parallel_text", "path": entry.path, "name": name, "corpora": []}
        if entry.split:
            own["splits"] = {**data.splits, "train": entry.split}
        if entry.get("max_pairs") is not None:
            own["max_pairs"] = entry.max_pairs
        configs.append((OmegaConf.merge(data, own), float(entry.weight)))
    return configs


def fingerprint(content) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def prepare(cfg: DictConfig, tokenizers: TokenizerPair | None = None) -> TrainingData:
    """The run's training data, prepared now unless an earlier preparation of the same inputs
    and settings is complete. `tokenizers` (a resumed run's) are used instead of learning or
    loading vocabularies."""
    root = cfg.paths.prepared
    tf.io.gfile.makedirs(root)
    corpora = corpus_configs(cfg.data)
    readers = [PairReader(data) for data, _ in corpora]
    if tokenizers is None:
        tokenizers = vocabularies(cfg, readers)
    sampled = cfg.tokenizer.sample_nbest_size not in (0, 1)
    prepared = [prepare_corpus(reader, tokenizers, root, sampled) for reader in readers]
    return TrainingData(tokenizers, prepared, [weight for _, weight in corpora])


def vocabularies(cfg: DictConfig, readers: list[PairReader]) -> TokenizerPair:
    """`tokenizer.model_dir`'s tokenizers, or those learned from the corpora's sample (kept in
    the cache under a key of the inputs and the tokenizer settings)."""
    if cfg.tokenizer.get("model_dir"):
        folder = cfg.tokenizer.model_dir
        if TokenizerPair.missing_files(folder):
            missing = ", ".join(map(str, TokenizerPair.missing_files(folder)))
            raise TranslatorError(f"tokenizer.model_dir={folder}: missing {missing}")
        log.info("prepare: vocabularies from %s", folder)
        return TokenizerPair.load(folder)
    settings = {k: v for k, v in OmegaConf.to_container(cfg.tokenizer).items()
                if k not in TOKENIZER_FREE}  # fmt: skip
    key = fingerprint({"format": FORMAT, "inputs": [r.inputs() for r in readers],
                       "max_pairs": cfg.data.max_pairs, "tokenizer": settings})  # fmt: skip
    folder = posixpath.join(cfg.paths.prepared, "tokenizers", key)
    with building(folder, done="target.json") as partial:
        if partial is not None:
            sample = draw_sample(readers, cfg.tokenizer.max_sentences,
                                 cfg.tokenizer.max_sample_chars)  # fmt: skip
            log.info("prepare: vocabularies from a sample of %d pairs", len(sample[0]))
            train_tokenizers(*sample, cfg.tokenizer).save(partial)
    log.info("prepare: vocabularies in %s", folder)
    return TokenizerPair.load(folder)


def draw_sample(readers: list[PairReader], size: int, max_chars: int | None = None
                ) -> tuple[list[str], list[str]]:  # fmt: skip
    """A uniform random sample of `size` pairs of the corpora (reservoir sampling, seeded):
    all of them, in order, when they are fewer. When the sample holds more than `max_chars`
    characters (long lines: the vocabulary trainer's memory grows with them), a random part of
    it within that many."""
    rng = random.Random(0)
    source, target, seen = [], [], 0
    with progress("sample") as bar:
        for reader in readers:
            for chunk_source, chunk_target in reader.chunks():
                for s, t in zip(chunk_source, chunk_target, strict=True):
                    if seen < size:
                        source.append(s)
                        target.append(t)
                    else:
                        slot = rng.randrange(seen + 1)
                        if slot < size:
                            source[slot], target[slot] = s, t
                    seen += 1
                bar.update(len(chunk_source))
    if not source:
        raise TranslatorError(f"{readers[0].data.name}: the training split has no pairs")
    return within_chars(source, target, max_chars, rng)


def within_chars(source: list[str], target: list[str], max_chars: int | None, rng
                 ) -> tuple[list[str], list[str]]:  # fmt: skip
    """The pairs as they are if they hold at most `max_chars` characters, else a random subset
    of them that does."""
    if not max_chars or sum(map(len, source)) + sum(map(len, target)) <= max_chars:
        return source, target
    order = list(range(len(source)))
    rng.shuffle(order)
    kept, chars = [], 0
    for row in order:
        chars += len(source[row]) + len(target[row])
        if chars > max_chars:
            break
        kept.append(row)
    log.info("prepare: vocabulary sample cut to %d pairs (tokenizer.max_sample_chars=%d)",
             len(kept), max_chars)  # fmt: skip
    return [source[r] for r in kept], [target[r] for r in kept]


def prepare_corpus(reader: PairReader, tokenizers: TokenizerPair, root: str, text: bool
                   ) -> Prepared:  # fmt: skip
    """The shards of one corpus, prepared unless complete already."""
    data = reader.data
    settings = {
        "source": data.source, "target": data.target, "split": str(data.splits.train),
        "max_pairs": data.max_pairs, "max_tokens": data.max_tokens, "truncate": data.truncate,
        "max_length_ratio": data.max_length_ratio, "dedup": data.dedup, "shards": data.shards,
        "text": text, "tag": reader.tag, "tokenizers": [tokenizer_digest(tokenizers.source),
                                     tokenizer_digest(tokenizers.target)],
    }  # fmt: skip
    key = fingerprint({"format": FORMAT, "inputs": reader.inputs(), "settings": settings})
    folder = posixpath.join(root, f"{data.name}-{key}")
    with building(folder) as partial:
        if partial is not None:
            index = write_shards(reader, tokenizers, partial, settings)
            index.update(fingerprint=key, inputs=reader.inputs(), settings=settings)
            with tf.io.gfile.GFile(posixpath.join(partial, INDEX), "w") as f:
                f.write(json.dumps(index, indent=1))
    prepared = Prepared.load(folder)
    log.info("prepare: %s: %d pairs in %d shards", folder, prepared.pairs,
             len(prepared.index["shards"]))  # fmt: skip
    return prepared


def tokenizer_digest(tokenizer) -> str:
    digest = hashlib.sha256(tokenizer.model_proto).hexdigest()[:16]
    return f"{digest}{'-lower' if tokenizer.lowercase else ''}"


@contextmanager
def building(folder: str, done: str = INDEX) -> Iterator[str | None]:
    """Yield None when `folder` is complete (holds `done`, written last); otherwise a fresh
    `<folder>.partial` to fill, which becomes `folder` when the block ends without error.
    Holds `<folder>.lock` (local caches) so two commands preparing the same data do it once:
    the second waits, then reuses."""
    marker = posixpath.join(folder, done)
    if tf.io.gfile.exists(marker):
        yield None
        return
    with preparation_lock(folder):
        if tf.io.gfile.exists(marker):
            yield None
            return
        partial = folder + ".partial"
        if tf.io.gfile.exists(partial):
            log.info("prepare: removing %s, left by an interrupted preparation", partial)
            tf.io.gfile.rmtree(partial)
        if tf.io.gfile.exists(folder):  # incomplete: its marker is missing
            tf.io.gfile.rmtree(folder)
        tf.io.gfile.makedirs(partial)
        yield partial
        tf.io.gfile.rename(partial, folder)


@contextmanager
def preparation_lock(folder: str) -> Iterator[None]:
    if not is_local(folder):
        yield
        return
    os.makedirs(os.path.dirname(folder) or ".", exist_ok=True)
    with open(folder + ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("prepare: waiting for another command preparing %s", folder)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def progress(stage: str):
    """A pairs/s progress bar on a terminal (nothing in a log file)."""
    return tqdm(desc=f"prepare: {stage}", unit=" pairs", unit_scale=True, file=sys.stderr,
                disable=not sys.stderr.isatty(), mininterval=0.5)  # fmt: skip


def write_shards(reader: PairReader, tokenizers: TokenizerPair, folder: str, settings: dict
                 ) -> dict:  # fmt: skip
    """Tokenize, filter and write the corpus into `folder`; returns the index's counts."""
    start = time.perf_counter()
    writer = ShardWriter(folder, settings["shards"], settings["text"])
    max_tokens = settings["max_tokens"]
    histogram = np.zeros(max_tokens + 1, np.int64)
    dropped = {"too_long": 0, "length_ratio": 0, "duplicate": 0}
    seen: set[int] | None = set() if settings["dedup"] else None
    with progress(f"{reader.data.name} shards") as bar:
        for sources, targets in reader.chunks():
            chunk = tokenize_chunk(tokenizers, sources, targets)
            keep = chunk.keep(settings, dropped, seen, sources, targets)
            chunk = chunk.select(keep).cut(max_tokens)
            kept_texts = [s for s, k in zip(sources, keep, strict=True) if k], \
                [t for t, k in zip(targets, keep, strict=True) if k]  # fmt: skip
            writer.add(chunk, kept_texts)
            histogram += np.bincount(np.maximum(chunk.source.lengths, chunk.target.lengths),
                                     minlength=max_tokens + 1)[: max_tokens + 1]  # fmt: skip
            bar.update(len(sources))
    shards = writer.close()
    seconds = time.perf_counter() - start
    dropped["empty"] = reader.empty
    pairs = int(histogram.sum())
    if not pairs:
        raise TranslatorError(
            f"{reader.data.name}: the training split gives no batch: no pair is left after the "
            f"filters (data.max_tokens={max_tokens} tokens, data.max_length_ratio="
            f"{settings['max_length_ratio']}, data.dedup={settings['dedup']}; dropped {dropped})"
        )
    log.info("prepare: %s: %d of %d pairs kept (dropped %s) in %.1fs, %.0f pairs/s",
             reader.data.name, pairs, reader.pairs + reader.empty, dropped, seconds,
             (reader.pairs + reader.empty) / max(seconds, 1e-9))  # fmt: skip
    return {
        "format": FORMAT, "pairs": pairs, "read": reader.pairs + reader.empty,
        "dropped": dropped, "source_tokens": writer.tokens[0], "target_tokens": writer.tokens[1],
        "length_histogram": histogram.tolist(), "shards": shards, "seconds": round(seconds, 1),
    }  # fmt: skip


@dataclass
class Side:
    """One side of a chunk: ids of all pairs one after another (START/END included), lengths."""

    values: np.ndarray
    lengths: np.ndarray

    @classmethod
    def tokenized(cls, ragged: tf.RaggedTensor) -> Side:
        """Ragged ids without START/END -> a Side with them."""
        values, lengths = ragged.flat_values.numpy(), ragged.row_lengths().numpy()
        out_lengths = lengths + 2
        ends = np.cumsum(out_lengths)
        starts = ends - out_lengths
        out = np.empty(int(ends[-1]) if len(ends) else 0, np.int32)
        inner = np.ones(len(out), bool)
        inner[starts] = inner[ends - 1] = False
        out[starts], out[ends - 1] = START_ID, END_ID
        out[inner] = values
        return cls(out, out_lengths)

    def select(self, keep: np.ndarray) -> Side:
        return Side(self.values[np.repeat(keep, self.lengths)], self.lengths[keep])

    def cut(self, max_tokens: int) -> Side:
        """Rows over max_tokens keep their first max_tokens - 1 ids and end with END."""
        if not len(self.lengths) or self.lengths.max() <= max_tokens:
            return self
        starts = np.cumsum(self.lengths) - self.lengths
        position = np.arange(len(self.values)) - np.repeat(starts, self.lengths)
        values = self.values.copy()
        long = np.repeat(self.lengths > max_tokens, self.lengths)
        values[long & (position == max_tokens - 1)] = END_ID
        return Side(values[position < max_tokens], np.minimum(self.lengths, max_tokens))

    def boundaries(self) -> np.ndarray:
        """Where each row starts in `values`, and where the last one ends."""
        return np.concatenate([[0], np.cumsum(self.lengths)])


@dataclass
class Chunk:
    source: Side
    target: Side

    def keep(self, settings: dict, dropped: dict, seen: set | None, sources, targets
             ) -> np.ndarray:  # fmt: skip
        """Which pairs pass the filters (counting the others in `dropped` by reason)."""
        s, t = self.source.lengths - 2, self.target.lengths - 2
        keep = np.ones(len(s), bool)
        if not settings["truncate"]:
            fits = np.maximum(s, t) + 2 <= settings["max_tokens"]
            dropped["too_long"] += int((~fits).sum())
            keep &= fits
        ratio = settings["max_length_ratio"]
        if ratio:
            fits = np.maximum(s, t) <= ratio * np.maximum(np.minimum(s, t), 1)
            dropped["length_ratio"] += int((keep & ~fits).sum())
            keep &= fits
        if seen is not None:
            for row in np.flatnonzero(keep):
                digest = hash((sources[row], targets[row]))
                if digest in seen:
                    keep[row] = False
                    dropped["duplicate"] += 1
                else:
                    seen.add(digest)
        return keep

    def select(self, keep: np.ndarray) -> Chunk:
        return Chunk(self.source.select(keep), self.target.select(keep))

    def cut(self, max_tokens: int) -> Chunk:
        return Chunk(self.source.cut(max_tokens), self.target.cut(max_tokens))


def tokenize_chunk(tokenizers: TokenizerPair, sources: list[str], targets: list[str]) -> Chunk:
    return Chunk(Side.tokenized(tokenizers.source.tokenize(sources)),
                 Side.tokenized(tokenizers.target.tokenize(targets)))  # fmt: skip


class ShardWriter:
    """Records of RECORD_PAIRS pairs dealt to `count` shard files in turn."""

    def __init__(self, folder: str, count: int, text: bool):
        self.names = [shard_name(n) for n in range(count)]
        self.paths = [posixpath.join(folder, name) for name in self.names]
        self.writers = [tf.io.TFRecordWriter(path) for path in self.paths]
        self.pairs = [0] * count
        self.text = text
        self.records = 0
        self.tokens = [0, 0]

    def add(self, chunk: Chunk, texts: tuple[list[str], list[str]]) -> None:
        rows = len(chunk.source.lengths)
        bounds = chunk.source.boundaries(), chunk.target.boundaries()
        for first in range(0, rows, RECORD_PAIRS):
            last = min(first + RECORD_PAIRS, rows)
            sides = [
                (side.values[b[first] : b[last]], side.lengths[first:last])
                for side, b in zip((chunk.source, chunk.target), bounds, strict=True)
            ]
            record_texts = (texts[0][first:last], texts[1][first:last]) if self.text else None
            shard = self.records % len(self.writers)
            self.writers[shard].write(encode_record(*sides, record_texts))
            self.pairs[shard] += last - first
            self.records += 1
        self.tokens[0] += int(chunk.source.lengths.sum())
        self.tokens[1] += int(chunk.target.lengths.sum())

    def close(self) -> list[dict]:
        for writer in self.writers:
            writer.close()
        return [
            {"file": name, "pairs": pairs, "bytes": tf.io.gfile.stat(path).length}
            for name, path, pairs in zip(self.names, self.paths, self.pairs, strict=True)
        ]


def prepare_command(cfg: DictConfig) -> dict:
    """`make prepare`: prepare (or find prepared) the training data of `cfg`; print where it is
    and what it holds."""
    from translator.config import validate

    validate(cfg, ("data", "tokenizer", "paths"))
    training = prepare(cfg)
    summary = {"preparations": [
        {"folder": p.folder, "pairs": p.pairs, "dropped": p.index["dropped"],
         "source_tokens": p.index["source_tokens"], "target_tokens": p.index["target_tokens"],
         "shards": len(p.index["shards"]), "weight": weight}
        for p, weight in zip(training.prepared, training.weights, strict=True)
    ]}  # fmt: skip
    print(json.dumps(summary, indent=2))
    return summary
