"""Writing a file so that readers see the old one or the new one, never half of either.

This module owns the temporary names beside a target, their removal when a write fails, and
the fsyncs (file, then folder) that make a finished write survive a crash. It sits at the bottom
of the package: it imports nothing from `translator`, so every layer (tokenizer, run directory,
training, inference) can use it without an import cycle. It knows no run-directory names.

A temporary name is unique per call (process id and random token) and hidden (it starts with a
dot and ends with `.tmp`, or `.tmp.weights.h5` for Keras, which insists on that ending): two
writers of one target never share a temporary file, and no pattern the package lists files with
(`epoch_*.weights.h5`, `<name>.*.json`) matches one left behind by a killed process.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

WEIGHTS_SUFFIX = ".weights.h5"  # the ending Keras's `save_weights` requires


def temporary_path(path: Path, suffix: str = "") -> Path:
    """A unique hidden name beside `path`: `.<name>.<pid>-<random>.tmp<suffix>`."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}")


@contextmanager
def temporary_beside(path: Path, suffix: str = "") -> Iterator[Path]:
    """A `temporary_path` for `path`, removed if the block fails (a file or a folder)."""
    temporary = temporary_path(path, suffix)
    try:
        yield temporary
    except BaseException:
        _remove(temporary)
        raise


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write `content` (text as UTF-8) to `path`: a temporary file beside it, flushed to disk,
    renamed over it, then the folder flushed. On any failure (a full disk, an interrupt) the
    temporary file is removed and `path` keeps its old content."""
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    with temporary_beside(path) as temporary:
        with open(temporary, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    fsync_directory(path.parent)


@contextmanager
def open_atomic(path: Path) -> Iterator:
    """A new text file (UTF-8) for `path`, written as `write_atomic` writes: renamed over `path`
    only when the block ends without an exception, flushed to disk first."""
    path = Path(path)
    with temporary_beside(path) as temporary:
        with open(temporary, "x", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    fsync_directory(path.parent)


def save_weights_atomic(model, path: Path) -> None:
    """`model.save_weights(path)` through a temporary file, as `write_atomic` writes: `path` is
    never half written, and a failed save leaves no temporary file."""
    path = Path(path)
    with temporary_beside(path, WEIGHTS_SUFFIX) as temporary:
        model.save_weights(str(temporary))
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    fsync_directory(path.parent)


def fsync_directory(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk. Filesystems that cannot are skipped."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Remove a temporary file or folder if it is there; a failure to remove is not reported
    over the error that made it necessary."""
    with suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
