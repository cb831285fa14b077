import pytest

from tests.conftest import ANKI, MULTI30K, compose
from translator.data import corpus as corpus_module
from translator.data import load_corpus
from translator.errors import CorpusError, DatasetUnavailableError


def test_multi30k_splits_load_aligned():
    cfg = compose("data=multi30k_de_en")
    train = load_corpus(cfg.data, "train")
    valid = load_corpus(cfg.data, "validation")
    test = load_corpus(cfg.data, "test")
    assert (len(train), len(valid), len(test)) == (29000, 1014, 1000)
    first_de = (MULTI30K / "train.de").read_text(encoding="utf-8").split("\n")[0].strip()
    first_en = (MULTI30K / "train.en").read_text(encoding="utf-8").split("\n")[0].strip()
    assert (train.source[0], train.target[0]) == (first_de, first_en)


def test_anki_loads_spanish_to_english():
    cfg = compose("data=anki_es_en")
    valid = load_corpus(cfg.data, "validation")
    assert len(valid) + valid.dropped == 2000
    assert valid.target[0] == (ANKI / "validation.en").read_text("utf-8").split("\n")[0].strip()


def test_max_pairs_limits_each_split():
    cfg = compose("data=multi30k_de_en", "data.max_pairs=64")
    assert len(load_corpus(cfg.data, "train")) == 64


def write_pair(folder, src_lines, tgt_lines, split="train"):
    (folder / f"{split}.xx").write_bytes(src_lines)
    (folder / f"{split}.yy").write_bytes(tgt_lines)


def local(folder):
    return compose("data=parallel_text", f"data.path={folder}", "data.source=xx", "data.target=yy")


def test_empty_pairs_are_dropped_and_counted(tmp_path):
    write_pair(tmp_path, b"a\n\nc\nd\n", b"A\nB\n\nD\n")
    corpus = load_corpus(local(tmp_path).data, "train")
    assert (corpus.source, corpus.target, corpus.dropped) == (["a", "d"], ["A", "D"], 2)


def test_mismatched_line_counts(tmp_path):
    write_pair(tmp_path, b"a\nb\nc\n", b"A\nB\n")
    with pytest.raises(CorpusError, match=r"train\.xx has 3 lines but .*train\.yy has 2"):
        load_corpus(local(tmp_path).data, "train")


def test_invalid_utf8_names_file_and_line(tmp_path):
    write_pair(tmp_path, b"ok\nfine\nbad \xff byte\n", b"A\nB\nC\n")
    with pytest.raises(CorpusError, match=r"train\.xx:3: invalid UTF-8 \(byte 0xff\)") as error:
        load_corpus(local(tmp_path).data, "train")
    assert "\n" not in str(error.value)


def test_missing_file(tmp_path):
    (tmp_path / "train.xx").write_text("a\n")
    with pytest.raises(CorpusError, match=r"train\.yy: file not found"):
        load_corpus(local(tmp_path).data, "train")


def test_tfds_without_network_names_the_local_override(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "_online", lambda host, timeout=3.0: False)
    cfg = compose(f"data.tfds_data_dir={tmp_path}")  # the default dataset: TED pt->en
    with pytest.raises(DatasetUnavailableError) as error:
        load_corpus(cfg.data, "train")
    message = str(error.value)
    assert "ted_hrlr_translate/pt_to_en" in message and "no network" in message
    assert "data=parallel_text" in message and "\n" not in message


def test_network_probe_fails_fast_on_unreachable_host():
    assert corpus_module._online("host.invalid", timeout=1.0) is False
