"""Text as users hand it in. Owns one detail of reading it: a UTF-8 byte-order mark, which some
editors write at the start of a file, is no part of its first line. Reading, decompressing and
decoding stay with the callers; this module imports nothing of the package."""

from __future__ import annotations

import sys

BOM = "\ufeff".encode()  # b"\xef\xbb\xbf"


def strip_bom(data: bytes, name: str) -> bytes:
    """`data` without a leading UTF-8 byte-order mark. When there was one, a note on stderr
    names `name` (a file, or "<stdin>"), so the change to the input is never silent."""
    if not data.startswith(BOM):
        return data
    print(f"note: {name}: skipped the UTF-8 byte-order mark at its start", file=sys.stderr)
    return data[len(BOM) :]
