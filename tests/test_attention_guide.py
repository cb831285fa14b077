"""docs/attention.md runs as written: each Python block's printed output equals the text block
under it (the blocks share one namespace, in order)."""

import contextlib
import io
import re

import numpy as np

from translator.config import PROJECT_ROOT

GUIDE = PROJECT_ROOT / "docs" / "attention.md"


def examples() -> list[tuple[str, str]]:
    """(code, expected output) pairs: each ```python block and the ```text block after it."""
    pattern = r"```python\n(.*?)```\s*```text\n(.*?)```"
    return re.findall(pattern, GUIDE.read_text(encoding="utf-8"), flags=re.S)


def test_every_example_prints_what_the_guide_shows():
    pairs = examples()
    assert len(pairs) == 9
    namespace: dict = {}
    with np.printoptions():  # the guide sets print options; leave them as they were
        for code, expected in pairs:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(code, str(GUIDE), "exec"), namespace)  # noqa: S102 - the guide's code
            assert printed.getvalue() == expected, code
