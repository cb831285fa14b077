"""The `translate` command's input and output around a translator: standard input in batches,
input files. A stub translator stands in for the model (no training)."""

import io
import sys
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from translator.errors import CorpusError
from translator.inference.commands import translate_stream


class StubTranslator:
    """Translates a sentence to its upper case; records every call; `fail` raises on call 1."""

    def __init__(self, batch_size: int = 8, fail: BaseException | None = None):
        self.decode = SimpleNamespace(batch_size=batch_size)
        self.calls: list[list[str]] = []
        self.fail = fail

    def translate_detailed(self, sentences, progress=None, **_):
        self.calls.append(list(sentences))
        if self.fail and len(self.calls) == 1:
            raise self.fail
        return [SimpleNamespace(text=s.upper(), n_best=[]) for s in sentences]


class Pipe(io.StringIO):
    """Standard output that raises `error` when `text` is written; a BrokenPipeError also on
    every write after it (a reader that went away stays away)."""

    def __init__(self, text: str, error: BaseException):
        super().__init__()
        self.text, self.error, self.broken = text, error, False

    def write(self, s: str) -> int:
        if s == self.text or (self.broken and isinstance(self.error, BrokenPipeError)):
            self.broken = True
            raise self.error
        return super().write(s)


def piped_stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))  # not a terminal


CFG = OmegaConf.create({"strict": False, "print_n_best": False})


def test_a_flush_that_fails_is_neither_repeated_nor_followed_by_another(monkeypatch, capsys):
    piped_stdin(monkeypatch, b"eins\nzwei\ndrei\n")
    stub = StubTranslator(batch_size=2, fail=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        translate_stream(stub, CFG)
    assert stub.calls == [["eins", "zwei"]]  # once, and no flush of "drei" after Ctrl-C
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("error", [KeyboardInterrupt(), BrokenPipeError()])
def test_an_error_while_printing_a_batch_prints_no_line_twice(monkeypatch, error):
    piped_stdin(monkeypatch, b"eins\nzwei\ndrei\n")
    out = Pipe("ZWEI", error)  # the batch's second line
    monkeypatch.setattr(sys, "stdout", out)
    stub = StubTranslator(batch_size=2)
    with pytest.raises(type(error)):
        translate_stream(stub, CFG)
    assert stub.calls == [["eins", "zwei"]]  # neither again nor followed by "drei"
    assert out.getvalue() == "EINS\n"


def test_the_lines_before_a_bad_one_are_translated_once_with_strict(monkeypatch, capsys):
    piped_stdin(monkeypatch, b"eins\nzwei\n\xff\nvier\n")
    stub = StubTranslator(batch_size=8)
    with pytest.raises(CorpusError, match="<stdin>:3: invalid UTF-8"):
        translate_stream(stub, OmegaConf.merge(CFG, {"strict": True}))
    assert stub.calls == [["eins", "zwei"]]
    assert capsys.readouterr().out == "EINS\nZWEI\n"
