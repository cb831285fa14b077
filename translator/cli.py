"""What the scripts share: user errors become one line on stderr and a non-zero exit."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from translator.native_logs import filter_native_stderr, verbose

if not verbose():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
filter_native_stderr()  # what TF_CPP_MIN_LOG_LEVEL does not silence (before TensorFlow loads)

from translator.errors import TranslatorError  # noqa: E402


def run(function: Callable, *args, **kwargs):
    """Call a library entry point; report a TranslatorError as `error: ...` and exit 2."""
    try:
        return function(*args, **kwargs)
    except TranslatorError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
