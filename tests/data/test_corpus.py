import gzip
import json
import socket

import pytest

from tests.conftest import ANKI, MULTI30K, compose, tiny_run
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


@pytest.mark.parametrize("split,pairs", [("train", 114964), ("validation", 2000), ("test", 2000)])
def test_shipped_tatoeba_corpus_is_the_anki_corpus_line_for_line(split, pairs):
    cfg = compose()  # the default experiment reads the gzip files shipped in data/
    assert cfg.data.name == "tatoeba_es_en" and "shared" not in cfg.data.path
    corpus = load_corpus(cfg.data, split)
    assert len(corpus) + corpus.dropped == pairs
    for lang, lines in (("es", corpus.source), ("en", corpus.target)):
        plain = (ANKI / f"{split}.{lang}").read_text("utf-8").split("\n")
        assert lines == [line.strip() for line in plain if line.strip()]


def test_gzip_and_plain_text_load_identically(tmp_path):
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    plain.mkdir(), packed.mkdir()
    lines = {"xx": "uno\ndos  \n\ntrès ñ\n", "yy": "one\ntwo\nthree\nfour\n"}
    for lang, text in lines.items():
        (plain / f"train.{lang}").write_text(text, encoding="utf-8")
        (packed / f"train.{lang}.gz").write_bytes(gzip.compress(text.encode("utf-8")))
    from_plain = load_corpus(local(plain).data, "train")
    from_gzip = load_corpus(local(packed).data, "train")
    assert (from_gzip.source, from_gzip.target) == (from_plain.source, from_plain.target)
    assert from_gzip.source == ["uno", "dos", "très ñ"] and from_gzip.dropped == 1


def test_truncated_gzip_is_one_line_naming_the_file(tmp_path):
    data = gzip.compress(("una frase\n" * 500).encode())
    (tmp_path / "train.xx.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "train.yy").write_text("a sentence\n" * 500)
    with pytest.raises(CorpusError, match=r"train\.xx\.gz: truncated") as error:
        load_corpus(local(tmp_path).data, "train")
    assert "\n" not in str(error.value)


def test_invalid_utf8_inside_gzip_names_file_and_line(tmp_path):
    (tmp_path / "train.xx.gz").write_bytes(gzip.compress(b"ok\nbad \xff\n"))
    (tmp_path / "train.yy").write_text("A\nB\n")
    with pytest.raises(CorpusError, match=r"train\.xx\.gz:2: invalid UTF-8"):
        load_corpus(local(tmp_path).data, "train")


def test_plain_and_gzip_copies_of_one_file_are_refused(tmp_path):
    write_pair(tmp_path, b"a\n", b"A\n")
    (tmp_path / "train.xx.gz").write_bytes(gzip.compress(b"b\n"))
    with pytest.raises(CorpusError, match=r"both train\.xx and train\.xx\.gz exist"):
        load_corpus(local(tmp_path).data, "train")


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
    cfg = compose("data=ted_hrlr_pt_en", f"data.tfds_data_dir={tmp_path}")
    with pytest.raises(DatasetUnavailableError) as error:
        load_corpus(cfg.data, "train")
    message = str(error.value)
    assert "ted_hrlr_translate/pt_to_en" in message and "no network" in message
    assert "data=parallel_text" in message and "\n" not in message


def test_network_probe_fails_fast_on_unreachable_host():
    assert corpus_module._online("host.invalid", timeout=1.0) is False


@pytest.mark.slow
def test_tfds_ted_pt_en_reads_and_trains_offline_on_mock_data(tmp_path, monkeypatch):
    """The TFDS path end to end without a download: tfds.testing.mock_data gives random examples
    with ted_hrlr_translate/pt_to_en's real features (from its builder code) to train on."""
    import tensorflow_datasets as tfds

    from translator.training.trainer import train

    def no_network(*args, **kwargs):
        raise AssertionError("the test tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(corpus_module, "_online", lambda host, timeout=3.0: True)
    cfg = tiny_run(
        tmp_path / "run", "data=ted_hrlr_pt_en", f"data.tfds_data_dir={tmp_path / 'tfds'}",
        "data.splits.validation=validation", "tokenizer.vocab_size=300",
        "train.epochs=3", "train.steps_per_epoch=8",
    )  # fmt: skip
    with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
        source, target = corpus_module.read_tfds(cfg.data, "train")
        metrics = train(cfg)
    assert len(source) == len(target) == 64
    assert all(isinstance(s, str) and s.strip() for s in source + target)
    assert source != target  # the pt and en features, not one of them twice
    history = [json.loads(line) for line in open(tmp_path / "run" / "history.jsonl")]
    assert metrics["optimizer_steps"] == 24
    assert history[-1]["loss"] < history[0]["loss"]
