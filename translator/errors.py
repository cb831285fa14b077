"""Errors the command-line scripts report as one line on stderr with a non-zero exit."""


class TranslatorError(Exception):
    """A user-facing error: bad input, missing data or an incomplete run directory."""


class CorpusError(TranslatorError):
    """A corpus that cannot be read: missing file, invalid UTF-8, mismatched line counts."""


class DatasetUnavailableError(TranslatorError):
    """A TFDS dataset that is neither prepared locally nor downloadable."""


class RunDirError(TranslatorError):
    """A run directory that is missing or lacks what inference needs."""
