"""Parallel corpora: a folder of `{split}.{lang}` text files (plain or gzip), or a TFDS dataset.

Both give a `Corpus`: two aligned lists of source and target sentences for one split.
"""

from __future__ import annotations

import gzip
import logging
import socket
import zlib
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from translator.errors import CorpusError, DatasetUnavailableError
from translator.textio import strip_bom

log = logging.getLogger(__name__)


@dataclass
class Corpus:
    """Aligned sentences of one split. `dropped` counts pairs removed because a side was empty."""

    source: list[str]
    target: list[str]
    name: str
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.source)


def load_corpus(data: DictConfig, split: str) -> Corpus:
    """Load one split ("train", "validation" or "test") of the corpus `data` describes.

    Args:
        data: the `data` config group (kind, source, target, splits, ...).
        split: a key of `data.splits`.

    Raises:
        CorpusError: missing file, invalid UTF-8, or mismatched line counts.
        DatasetUnavailableError: a TFDS dataset that cannot be downloaded here.
    """
    split_name = data.splits[split]
    if data.kind == "parallel_text":
        source, target = read_parallel_text(Path(data.path), split_name, data.source, data.target)
        name = f"{data.path}:{split_name}"
    elif data.kind == "tfds":
        source, target = read_tfds(data, split_name)
        name = f"tfds:{data.tfds_name}:{split_name}"
    else:
        raise CorpusError(f"unknown data.kind {data.kind!r}: expected 'parallel_text' or 'tfds'")
    corpus = drop_empty_pairs(source, target, name)
    if data.max_pairs:
        corpus.source, corpus.target = (
            corpus.source[: data.max_pairs],
            corpus.target[: data.max_pairs],
        )
    return corpus


def drop_empty_pairs(source: list[str], target: list[str], name: str) -> Corpus:
    pairs = [(s, t) for s, t in zip(source, target, strict=True) if s and t]
    dropped = len(source) - len(pairs)
    if dropped:
        log.info("%s: dropped %d pairs with an empty side", name, dropped)
    return Corpus([s for s, _ in pairs], [t for _, t in pairs], name, dropped)


def read_lines(path: Path) -> list[str]:
    """Read a UTF-8 text file (gzip when its name ends in .gz) into stripped lines.

    Errors name the file, and for a bad byte the line it is on.
    """
    data = read_file(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        bad = data[error.start : error.end].hex()
        raise CorpusError(f"{path}:{line}: invalid UTF-8 (byte 0x{bad})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline
    return [line.strip() for line in lines]


def read_file(path: Path) -> bytes:
    """The bytes of a text file, decompressed when its name ends in .gz, without a leading UTF-8
    byte-order mark (with a note naming the file); errors name the file."""
    if not path.is_file():
        raise CorpusError(f"{path}: file not found")
    data = path.read_bytes()
    return strip_bom(_gunzip(path, data) if path.suffix == ".gz" else data, str(path))


def _gunzip(path: Path, data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as error:
        reason = "truncated" if isinstance(error, EOFError) else "not valid gzip"
        raise CorpusError(f"{path}: {reason} ({error})") from None


def corpus_file(folder: Path, split: str, lang: str) -> Path:
    """`{folder}/{split}.{lang}`, or `{split}.{lang}.gz` when only the compressed file exists."""
    plain = folder / f"{split}.{lang}"
    packed = plain.with_name(plain.name + ".gz")
    if plain.is_file() and packed.is_file():
        raise CorpusError(f"{folder}: both {plain.name} and {packed.name} exist; keep one")
    return packed if packed.is_file() else plain


def read_parallel_text(folder: Path, split: str, source: str, target: str):
    """Read the `split` files of languages `source` and `target` in `folder`, checking alignment."""
    source_path = corpus_file(folder, split, source)
    target_path = corpus_file(folder, split, target)
    source_lines, target_lines = read_lines(source_path), read_lines(target_path)
    if len(source_lines) != len(target_lines):
        raise CorpusError(
            f"{source_path} has {len(source_lines)} lines but {target_path} has "
            f"{len(target_lines)}: line N of one must translate line N of the other"
        )
    return source_lines, target_lines


def read_tfds(data: DictConfig, split: str):
    """Read a TFDS translation dataset whose examples map language codes to sentences."""
    source, target = [], []
    for example in tfds_builder(data).as_dataset(split=split).as_numpy_iterator():
        source.append(example[data.source].decode("utf-8").strip())
        target.append(example[data.target].decode("utf-8").strip())
    return source, target


def tfds_builder(data: DictConfig):
    """The TFDS builder of `data.tfds_name`, downloaded and prepared if it is not yet (and the
    network answers)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(data.tfds_name, data_dir=data.tfds_data_dir)
    if not builder.is_prepared():
        if not _online(data.network_check_host):
            raise DatasetUnavailableError(
                f"TFDS dataset {data.tfds_name!r} is not prepared locally and cannot be downloaded "
                "(no network); train on local files instead, e.g. `make train EXP=multi30k_de_en` "
                "or `data=parallel_text data.path=DIR data.source=xx data.target=yy`"
            )
        try:
            builder.download_and_prepare()
        except Exception as error:  # noqa: BLE001 - network and archive errors of any kind
            raise DatasetUnavailableError(
                f"could not download TFDS dataset {data.tfds_name!r}: {error.__class__.__name__}; "
                "train on local files instead with data=parallel_text data.path=DIR "
                "data.source=xx data.target=yy"
            ) from error
    return builder


def _online(host: str | None, timeout: float = 3.0) -> bool:
    """A fast reachability probe, so an offline machine fails in seconds rather than minutes."""
    if not host:
        return True
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
