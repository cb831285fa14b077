"""The README's commands run as written: each `make` line in its code blocks names a real target."""

import re

from translator.config import PROJECT_ROOT


def fenced_make_lines(text: str) -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip().startswith("make")]  # fmt: skip


def makefile_targets() -> set[str]:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][\w-]*):", makefile, flags=re.M))


def test_every_make_command_in_the_readme_names_a_makefile_target():
    lines = fenced_make_lines((PROJECT_ROOT / "README.md").read_text())
    assert len(lines) >= 10  # the two commands, the experiments and the run commands
    targets = makefile_targets()
    for line in lines:
        words = [w for w in line.split()[1:] if not w.startswith("#")]
        target = next(w for w in words if "=" not in w)
        assert target in targets, line


def test_the_readme_stays_short():
    assert len((PROJECT_ROOT / "README.md").read_text().splitlines()) <= 220
