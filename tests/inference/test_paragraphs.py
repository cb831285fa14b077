"""Translating paragraphs and files sentence by sentence (`translate_texts`, the translate
command's file path): a stub translator stands in for the model (no training)."""

import gzip
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from translator.errors import CorpusError
from translator.inference import commands
from translator.inference.commands import translate_file
from translator.inference.paragraphs import translate_texts
from translator.inference.translator import Translation
from translator.segmentation import Segmenter


class Upper:
    """Translates a sentence to its upper case with score -len; records every call."""

    def __init__(self, batch_size: int = 8):
        self.decode = SimpleNamespace(batch_size=batch_size)
        self.run_config = OmegaConf.create({"data": {"source": "en"}})
        self.calls: list[list[str]] = []

    def translate_detailed(self, sentences, attention=False, progress=None):
        self.calls.append(list(sentences))
        results = [Translation(source=s.strip(), text=s.strip().upper(), score=-len(s.strip()),
                               n_best=[(s.strip().upper(), -len(s.strip()))])
                   if s.strip() else Translation(source=s, text="", score=0.0)
                   for s in sentences]  # fmt: skip
        if progress:
            progress(len(sentences))
        return results


SEGMENTER = Segmenter("en")


def test_sentences_are_translated_together_and_rejoined_with_the_texts_own_spacing():
    texts = ["It rains. Take an umbrella!  Where is it?", "", "One line.", "   ",
             "First paragraph. Still it.\n\nSecond paragraph.\r\nA new line."]  # fmt: skip
    stub = Upper()
    done = []
    results = translate_texts(stub, texts, SEGMENTER, progress=done.append)
    assert stub.calls == [["It rains.", "Take an umbrella!", "Where is it?", "One line.",
                           "First paragraph.", "Still it.", "Second paragraph.",
                           "A new line."]]  # one call: the usual batches  # fmt: skip
    assert [r.text for r in results] == [
        "IT RAINS. TAKE AN UMBRELLA!  WHERE IS IT?", "", "ONE LINE.", "",
        "FIRST PARAGRAPH. STILL IT.\n\nSECOND PARAGRAPH.\r\nA NEW LINE."]  # fmt: skip
    assert results[0].score == -(9 + 17 + 12)
    assert [(p.start, p.end) for p in results[0].sentences] == [(0, 9), (10, 27), (29, 41)]
    assert [texts[0][p.start : p.end] for p in results[0].sentences] == stub.calls[0][:3]
    assert results[2].sentences[0].translation.text == "ONE LINE." and not results[1].sentences
    assert sum(done) == pytest.approx(len(texts))  # progress counts texts


def test_without_a_segmenter_each_text_is_one_input():
    stub = Upper()
    texts = ["It rains. Take an umbrella!", "x"]
    results = translate_texts(stub, texts, None)
    assert stub.calls == [texts] and results[0].text == "IT RAINS. TAKE AN UMBRELLA!"
    assert not results[0].sentences


def cfg(tmp_path, name: str, **more):
    values = {
        "input": str(tmp_path / name),
        "output": str(tmp_path / "out.txt"),
        "overwrite": False,
        "strict": False,
        "print_n_best": False,
        "segment": True,
    }
    return OmegaConf.create({**values, **more})  # fmt: skip


@pytest.mark.parametrize("name", ["doc.txt", "doc.txt.gz"])
def test_a_file_comes_back_with_one_line_per_line_in_blocks(tmp_path, monkeypatch, name):
    monkeypatch.setattr(commands, "BLOCK_LINES", 3)
    long_line = " ".join(f"Sentence number {i} is here." for i in range(300))
    lines = ["A first line. With two sentences.", "", "   ", long_line, "Last one", "", "x."]
    data = ("\n".join(lines) + "\n").encode()
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    stub = Upper()
    report = translate_file(stub, cfg(tmp_path, name))
    out = (tmp_path / "out.txt").read_text().split("\n")
    assert out[-1] == "" and len(out[:-1]) == len(lines) == report["sentences"]
    assert out[:-1] == [line.strip().upper() for line in lines]
    assert len(stub.calls) == 3  # blocks of 3 lines: memory stays flat
    assert len(stub.calls[1]) == 1 + 300  # "Last one" and the long line's 300 sentences


def test_segment_false_is_one_input_per_line(tmp_path):
    (tmp_path / "doc.txt").write_text("It rains. Take an umbrella!\nx\n")
    stub = Upper()
    translate_file(stub, cfg(tmp_path, "doc.txt", segment=False))
    assert stub.calls == [["It rains. Take an umbrella!", "x"]]


def test_a_bad_line_with_strict_keeps_the_lines_before_it_and_an_old_output_is_kept(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(commands, "BLOCK_LINES", 2)
    (tmp_path / "doc.txt").write_bytes(b"One. Two.\nThree.\nFour.\nbad \xff\nFive.\n")
    with pytest.raises(CorpusError, match=r"doc.txt:4: invalid UTF-8"):
        translate_file(Upper(), cfg(tmp_path, "doc.txt", strict=True))
    assert (tmp_path / "out.txt").read_text() == "ONE. TWO.\nTHREE.\nFOUR.\n"
    with pytest.raises(Exception, match="exists; pass overwrite=true"):
        translate_file(Upper(), cfg(tmp_path, "doc.txt"))
    (tmp_path / "missing").unlink(missing_ok=True)
    with pytest.raises(CorpusError, match="missing: file not found"):
        translate_file(Upper(), cfg(tmp_path, "missing", overwrite=True))
    assert (tmp_path / "out.txt").read_text() == "ONE. TWO.\nTHREE.\nFOUR.\n"  # untouched


def test_standard_input_and_text_are_segmented_too(monkeypatch, capsys):
    import io
    import sys

    from translator.inference.commands import translate_stream

    data = b"It rains. Take an umbrella!\n\nOne more.  Two more.\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    stub = Upper(batch_size=2)
    translate_stream(stub, OmegaConf.create({"strict": False, "print_n_best": False,
                                             "segment": True}))  # fmt: skip
    assert capsys.readouterr().out == "IT RAINS. TAKE AN UMBRELLA!\n\nONE MORE.  TWO MORE.\n"
    assert stub.calls == [["It rains.", "Take an umbrella!"], ["One more.", "Two more."]]
