"""Errors the command-line scripts report as one line on stderr with a non-zero exit."""


class TranslatorError(Exception):
    """A user-facing error: bad input, missing data or an incomplete run directory."""


class CorpusError(TranslatorError):
    """A corpus that cannot be read: missing file, invalid UTF-8, mismatched line counts."""


class DatasetUnavailableError(TranslatorError):
    """A TFDS dataset that is neither prepared locally nor downloadable."""


class RunDirError(TranslatorError):
    """A run directory that is missing or lacks what inference needs."""


def first_line(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
