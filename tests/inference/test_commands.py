"""The `translate` command's input and output around a translator: standard input in batches,
input files, byte-order marks. A stub translator stands in for the model (no training)."""

import io
import sys
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from translator.errors import CorpusError, TranslatorError
from translator.inference.commands import translate_file, translate_stream
from translator.inference.translator import Translation

BOM = "\ufeff".encode()


class StubTranslator:
    """Translates a sentence to its upper case; records every call; `fail` raises on call 1."""

    def __init__(self, batch_size: int = 8, fail: BaseException | None = None):
        self.decode = SimpleNamespace(batch_size=batch_size)
        self.calls: list[list[str]] = []
        self.prefixes: list[list[str] | None] = []
        self.alignments: list[int | None] = []
        self.constraints: list[list[list[str]] | None] = []
        self.fail = fail

    def translate_detailed(self, sentences, progress=None, prefixes=None, alignment=None,
                           constraints=None, **_):  # fmt: skip
        self.calls.append(list(sentences))
        self.constraints.append(constraints)
        self.alignments.append(alignment)
        self.prefixes.append(prefixes)
        if self.fail and len(self.calls) == 1:
            raise self.fail
        prefixes = prefixes or [""] * len(sentences)
        found = [Translation(source=s, text=f"{p} {s.upper()}".strip(), score=0.0,
                             length_limited="..." in s)
                 for s, p in zip(sentences, prefixes, strict=True)]  # fmt: skip
        for result in found if alignment is not None else []:  # word i to word i
            result.alignment = [(i, i) for i in range(len(result.text.split()))]
        return found


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


def test_a_byte_order_mark_on_stdin_is_skipped_with_a_note(monkeypatch, capsys):
    piped_stdin(monkeypatch, BOM + b"Hallo\nWelt\n")
    stub = StubTranslator()
    assert translate_stream(stub, CFG) == {"sentences": 2}
    assert stub.calls == [["Hallo", "Welt"]]
    captured = capsys.readouterr()
    assert captured.out == "HALLO\nWELT\n"
    assert captured.err == "note: <stdin>: skipped the UTF-8 byte-order mark at its start\n"


@pytest.mark.parametrize("name", ["src.de", "src.de.gz"])
def test_a_byte_order_mark_in_an_input_file_is_skipped_with_a_note(tmp_path, capsys, name):
    import gzip

    pack = gzip.compress if name.endswith(".gz") else bytes
    plain, marked = tmp_path / f"plain.{name}", tmp_path / f"marked.{name}"
    plain.write_bytes(pack(b"Hallo\nWelt\n"))
    marked.write_bytes(pack(BOM + b"Hallo\nWelt\n"))
    outputs = []
    for path in (plain, marked):
        stub = StubTranslator()
        translate_file(stub, OmegaConf.merge(CFG, {"input": str(path), "output": None}))
        outputs.append((stub.calls, capsys.readouterr()))
    (plain_calls, plain_io), (marked_calls, marked_io) = outputs
    assert marked_calls == plain_calls == [["Hallo", "Welt"]]
    assert marked_io.out == plain_io.out == "HALLO\nWELT\n"
    note = f"note: {marked}: skipped the UTF-8 byte-order mark at its start"
    assert note in marked_io.err.splitlines() and "byte-order" not in plain_io.err


def test_translations_cut_at_their_length_limit_are_named_by_line(monkeypatch, capsys):
    piped_stdin(monkeypatch, b"one\ntwo ...\nthree\nfour ...\n")
    translate_stream(StubTranslator(batch_size=2), CFG)
    out, err = capsys.readouterr()
    assert out.splitlines() == ["ONE", "TWO ...", "THREE", "FOUR ..."]  # still translated
    warnings = [line for line in err.splitlines() if "length limit" in line]
    assert len(warnings) == 2
    assert warnings[0].startswith("warning: line 2: ") and "'two ...'" in warnings[0]
    assert warnings[1].startswith("warning: line 4: ")


def test_a_prefix_file_gives_each_line_its_prefix_and_keeps_those_lines_whole(tmp_path, capsys):
    source, prefixes = tmp_path / "in.txt", tmp_path / "prefix.txt"
    source.write_text("One. Two.\nThree. Four.\n\n", encoding="utf-8")
    prefixes.write_text("So\n\n\n", encoding="utf-8")
    stub = StubTranslator()
    cfg = {"input": str(source), "output": None, "prefix": str(prefixes), "segment": True}
    translate_file(stub, OmegaConf.merge(CFG, cfg))
    assert stub.calls == [["One. Two.", "Three.", "Four."]]  # the prefixed line stays whole
    assert stub.prefixes == [["So", "", ""]]
    assert capsys.readouterr().out == "So ONE. TWO.\nTHREE. FOUR.\n\n"

    prefixes.write_text("So\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"prefix.txt has 1 lines but .*in.txt has more"):
        translate_file(StubTranslator(), OmegaConf.merge(CFG, cfg))


def test_prefixes_on_standard_input_follow_the_lines(monkeypatch, tmp_path, capsys):
    piped_stdin(monkeypatch, b"eins\nzwei\n")
    prefixes = tmp_path / "prefix.txt"
    prefixes.write_text("\nTwo\n", encoding="utf-8")
    stub = StubTranslator(batch_size=8)
    translate_stream(stub, OmegaConf.merge(CFG, {"prefix": str(prefixes)}))
    assert stub.prefixes == [["", "Two"]]
    assert capsys.readouterr().out == "EINS\nTwo ZWEI\n"


def test_print_alignment_adds_each_lines_word_links(tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("One two. Three.\n\nFour\n", encoding="utf-8")
    stub = StubTranslator()
    cfg = {"input": str(source), "output": None, "segment": True, "print_alignment": True,
           "alignment_layer": -2}  # fmt: skip
    translate_file(stub, OmegaConf.merge(CFG, cfg))
    assert stub.alignments == [-2]
    # "One two." and "Three." are translated apart: the second's words count from the line's
    # start on both sides.
    assert capsys.readouterr().out == "ONE TWO. THREE. ||| 0-0 1-1 2-2\n ||| \nFOUR ||| 0-0\n"
    with pytest.raises(TranslatorError, match="not with print_n_best"):
        translate_file(stub, OmegaConf.merge(CFG, {**cfg, "print_n_best": True}))


def test_a_constraints_file_gives_each_line_its_phrases(tmp_path, capsys):
    source, constraints = tmp_path / "in.txt", tmp_path / "terms.txt"
    source.write_text("One. Two.\nThree. Four.\n", encoding="utf-8")
    constraints.write_text("bike\tred car\n\n", encoding="utf-8")  # phrases split by a tab
    stub = StubTranslator()
    cfg = {"input": str(source), "output": None, "constraints": str(constraints), "segment": True}
    translate_file(stub, OmegaConf.merge(CFG, cfg))
    assert stub.calls == [["One. Two.", "Three.", "Four."]]  # the constrained line stays whole
    assert stub.constraints == [[["bike", "red car"], [], []]]
    constraints.write_text("bike\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"terms.txt has 1 lines but .*in.txt has more"):
        translate_file(StubTranslator(), OmegaConf.merge(CFG, cfg))
