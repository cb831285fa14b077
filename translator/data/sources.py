"""Streaming reads of a training corpus, for its one-time preparation (`translator.data.prepare`).

A corpus is a folder of `{split}.{lang}` text files (plain or gzip) or a TFDS dataset. A split
may name several files: a glob (`data.splits.train='news.*'`) or a list (`[europarl, news]`),
each `{name}.{source}` paired with its `{name}.{target}`. Any path `tf.io.gfile` opens works
(`gs://`, `s3://` where TensorFlow's file systems are installed). Pairs come in chunks of a few
thousand, so memory does not grow with the corpus; errors name the file and line.
"""

from __future__ import annotations

import gzip
import logging
import posixpath
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import zip_longest

import tensorflow as tf
from omegaconf import DictConfig, ListConfig

from translator.errors import CorpusError
from translator.textio import strip_bom

log = logging.getLogger(__name__)

CHUNK_PAIRS = 4096  # pairs read, tokenized and filtered together
SYNTHETIC_MARK = "backtranslation.json"  # in a corpus folder that `make backtranslate` wrote
GLOB_CHARS = "*?["


def is_local(path: str) -> bool:
    return "://" not in path


def open_binary(path: str):
    """A binary file object of `path` (local or any tf.io.gfile scheme), decompressed when its
    name ends in .gz."""
    raw = open(path, "rb") if is_local(path) else tf.io.gfile.GFile(path, "rb")  # noqa: SIM115
    return gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw


def exists(path: str) -> bool:
    return tf.io.gfile.exists(path)


def split_names(spec) -> list[str]:
    """The file names (without the language suffix) a split names: one, a list, or globs."""
    if isinstance(spec, list | ListConfig | tuple):
        return [str(name) for name in spec]
    return [str(spec)]


def language_file(folder: str, name: str, lang: str) -> str:
    """`{folder}/{name}.{lang}`, or `{name}.{lang}.gz` when only the compressed file exists."""
    plain = posixpath.join(folder, f"{name}.{lang}")
    packed = plain + ".gz"
    if exists(plain) and exists(packed):
        raise CorpusError(f"{folder}: both {name}.{lang} and {name}.{lang}.gz exist; keep one")
    return packed if exists(packed) else plain


def split_files(folder: str, spec, source: str, target: str) -> list[tuple[str, str]]:
    """(source file, target file) of each part of a split, in a stable order.

    Raises:
        CorpusError: a name or glob that matches no file, or a source file without its target.
    """
    pairs = []
    for name in split_names(spec):
        if not any(c in name for c in GLOB_CHARS):
            pairs.append((language_file(folder, name, source), language_file(folder, name, target)))
            continue
        pattern = posixpath.join(folder, f"{name}.{source}")
        matches = sorted(set(tf.io.gfile.glob(pattern)) | set(tf.io.gfile.glob(pattern + ".gz")))
        if not matches:
            raise CorpusError(f"{pattern}[.gz]: no file matches")
        for path in matches:
            stem = posixpath.basename(path).removesuffix(".gz").removesuffix(f".{source}")
            pairs.append((path, language_file(folder, stem, target)))
    for _, target_path in pairs:
        if not exists(target_path):
            raise CorpusError(f"{target_path}: file not found")
    return pairs


def count_lines(path: str) -> int:
    """Lines of a text file (plain or gzip), a final line without a newline included."""
    if not exists(path):
        raise CorpusError(f"{path}: file not found")
    count, last = 0, b"\n"
    with open_binary(path) as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def decoded_lines(path: str) -> Iterator[str]:
    """The stripped lines of a UTF-8 text file, streamed; errors name the file and line."""
    if not exists(path):
        raise CorpusError(f"{path}: file not found")
    try:
        with open_binary(path) as f:
            for number, line in enumerate(f, start=1):
                if number == 1:
                    line = strip_bom(line, path)
                try:
                    yield line.decode("utf-8").strip()
                except UnicodeDecodeError as error:
                    bad = line[error.start : error.end].hex()
                    raise CorpusError(f"{path}:{number}: invalid UTF-8 (byte 0x{bad})") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        reason = "truncated" if isinstance(error, EOFError) else "not valid gzip"
        raise CorpusError(f"{path}: {reason} ({error})") from None


@dataclass
class PairReader:
    """The pairs of one training corpus, read in chunks, counting what it reads and drops.

    Attributes:
        pairs: pairs read so far (both sides non-empty), at most `data.max_pairs`.
        empty: pairs dropped because a side was empty.
    """

    data: DictConfig
    split: str = "train"
    pairs: int = 0
    empty: int = 0
    _inputs: list | None = field(default=None, repr=False)

    def inputs(self) -> list[dict]:
        """What identifies the input: each file's path, size and modification time, or the
        TFDS dataset's name, version and split."""
        if self._inputs is None:
            self._inputs = self._describe()
        return self._inputs

    def _describe(self) -> list[dict]:
        if self.data.kind == "tfds":
            import tensorflow_datasets as tfds

            builder = tfds.builder(self.data.tfds_name, data_dir=self.data.tfds_data_dir)
            return [{"tfds": self.data.tfds_name, "version": str(builder.version),
                     "split": str(self.data.splits[self.split]),
                     "data_dir": self.data.tfds_data_dir}]  # fmt: skip
        files = split_files(self.data.path, self.data.splits[self.split],
                            self.data.source, self.data.target)  # fmt: skip
        described = []
        for path in (p for pair in files for p in pair):
            stat = tf.io.gfile.stat(path)
            described.append({"path": path, "bytes": stat.length, "mtime_ns": stat.mtime_nsec})
        return described

    @property
    def tag(self) -> str | None:
        """`data.tag_synthetic` when this corpus is back-translated (its folder holds
        SYNTHETIC_MARK, which `make backtranslate` writes), else None."""
        tag = self.data.get("tag_synthetic")
        if not tag or self.data.kind != "parallel_text":
            return None
        return tag if exists(posixpath.join(self.data.path, SYNTHETIC_MARK)) else None

    def chunks(self) -> Iterator[tuple[list[str], list[str]]]:
        """(sources, targets) of up to CHUNK_PAIRS pairs at a time, in corpus order; the sources
        of a back-translated corpus start with `tag` (when set)."""
        self.pairs = self.empty = 0
        limit = self.data.max_pairs
        prefix = f"{self.tag} " if self.tag else ""
        source, target = [], []
        for s, t in self._raw_pairs():
            if not (s and t):
                self.empty += 1
                continue
            source.append(prefix + s)
            target.append(t)
            self.pairs += 1
            if len(source) == CHUNK_PAIRS or self.pairs == limit:
                yield source, target
                source, target = [], []
            if self.pairs == limit:
                return
        if source:
            yield source, target

    def _raw_pairs(self) -> Iterator[tuple[str, str]]:
        if self.data.kind == "tfds":
            yield from tfds_pairs(self.data, str(self.data.splits[self.split]))
            return
        files = split_files(self.data.path, self.data.splits[self.split],
                            self.data.source, self.data.target)  # fmt: skip
        for source_path, target_path in files:
            yield from aligned_lines(source_path, target_path)


def aligned_lines(source_path: str, target_path: str) -> Iterator[tuple[str, str]]:
    """Line N of one file with line N of the other; an error when their lengths differ."""
    counts = [0, 0]
    for s, t in zip_longest(decoded_lines(source_path), decoded_lines(target_path)):
        counts[0] += s is not None
        counts[1] += t is not None
        if s is not None and t is not None:
            yield s, t
    if counts[0] != counts[1]:
        raise CorpusError(
            f"{source_path} has {counts[0]} lines but {target_path} has {counts[1]}: "
            "line N of one must translate line N of the other"
        )


def tfds_pairs(data: DictConfig, split: str) -> Iterator[tuple[str, str]]:
    """A TFDS translation dataset's pairs, streamed from its prepared files in batches."""
    from translator.data.corpus import tfds_builder

    dataset = tfds_builder(data).as_dataset(split=split).batch(CHUNK_PAIRS)
    for batch in dataset.as_numpy_iterator():
        for s, t in zip(batch[data.source], batch[data.target], strict=True):
            yield s.decode("utf-8").strip(), t.decode("utf-8").strip()
