"""The one-time preparation (vocabularies, shards, index) and the streamed training pairs."""

import collections
import gzip
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import MULTI30K, compose
from translator.config import PROJECT_ROOT
from translator.data import load_corpus
from translator.data.pipeline import batch_stream, make_batches, tokenize_corpus
from translator.data.prepare import prepare
from translator.data.shards import Prepared, pair_stream
from translator.data.sources import SYNTHETIC_MARK
from translator.errors import CorpusError
from translator.tokenizer import PAD_ID
from translator.training.batches import training_pairs

PAIRS = 3000


def settings(tmp_path, *overrides):
    return compose("~experiment", "data=multi30k_de_en", "tokenizer=shared",
                   "tokenizer.vocab_size=1000", f"data.max_pairs={PAIRS}",
                   f"paths.prepared={tmp_path / 'prepared'}", *overrides)  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cfg = settings(tmp_path_factory.mktemp("prepare"))
    return cfg, prepare(cfg)


def rows(pairs) -> collections.Counter:
    return collections.Counter((tuple(s), tuple(t)) for s, t in pairs.as_numpy_iterator())


def batch_rows(batches) -> collections.Counter:
    """Each batch row's source and target ids without padding."""
    counter = collections.Counter()
    for (source, target_in), target_out in batches.as_numpy_iterator():
        for s, t_in, t_out in zip(source, target_in, target_out, strict=True):
            target = np.concatenate([t_in[:1], t_out])
            counter[(tuple(s[s != PAD_ID]), tuple(target[target != PAD_ID]))] += 1
    return counter


def test_a_pass_over_the_shards_is_every_pair_once_with_the_in_memory_ids(prepared):
    cfg, training = prepared
    corpus = load_corpus(cfg.data, "train")
    in_memory = tokenize_corpus(corpus, training.tokenizers, cfg.data)
    streamed = pair_stream(training.prepared[0], seed=1, passes=1)
    assert rows(streamed) == rows(in_memory)
    assert sum(rows(streamed).values()) == PAIRS
    # Batched as training batches them: the same ids as today's in-memory pipeline's batches.
    from_shards = batch_stream(streamed, cfg.data, training=False)
    assert batch_rows(from_shards) == batch_rows(
        make_batches(corpus, training.tokenizers, cfg.data, training=False)
    )


def test_each_pass_reads_the_shards_in_a_new_seeded_order(prepared):
    _, training = prepared
    two = list(pair_stream(training.prepared[0], seed=1, passes=2).as_numpy_iterator())
    first, second = two[:PAIRS], two[PAIRS:]
    again = list(pair_stream(training.prepared[0], seed=1, passes=1).as_numpy_iterator())

    def key(pairs):
        return [(tuple(s), tuple(t)) for s, t in pairs]

    assert sorted(key(first)) == sorted(key(second)) and key(first) != key(second)
    assert key(first) == key(again)


def test_the_index_counts_what_the_corpus_holds(prepared):
    cfg, training = prepared
    index = training.prepared[0].index
    ids = list(tokenize_corpus(load_corpus(cfg.data, "train"), training.tokenizers,
                               cfg.data).as_numpy_iterator())  # fmt: skip
    assert index["pairs"] == len(ids) == PAIRS
    assert index["source_tokens"] == sum(len(s) for s, _ in ids)
    assert index["target_tokens"] == sum(len(t) for _, t in ids)
    lengths = np.bincount([max(len(s), len(t)) for s, t in ids], minlength=cfg.data.max_tokens + 1)
    np.testing.assert_array_equal(index["length_histogram"], lengths)
    assert sum(shard["pairs"] for shard in index["shards"]) == PAIRS
    assert len(index["shards"]) == cfg.data.shards


def copy_corpus(folder, pairs, extra=()):
    """A parallel-text folder with the first `pairs` Multi30k de-en training pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    for lang in ("de", "en"):
        lines = (MULTI30K / f"train.{lang}").read_text().splitlines()[:pairs]
        (folder / f"train.{lang}").write_text("\n".join([*lines, *extra]) + "\n")
        (folder / f"val.{lang}").write_text("\n".join(lines[:50]) + "\n")
    return folder


def local(tmp_path, folder, *overrides):
    return compose("~experiment", "data=parallel_text", f"data.path={folder}",
                   "data.source=de", "data.target=en", "data.splits.validation=val",
                   "tokenizer=shared", "tokenizer.vocab_size=500",
                   f"paths.prepared={tmp_path / 'prepared'}", *overrides)  # fmt: skip


def test_a_changed_corpus_or_setting_gives_a_new_preparation_and_the_same_is_reused(tmp_path):
    folder = copy_corpus(tmp_path / "corpus", 500)
    first = prepare(local(tmp_path, folder)).prepared[0]
    index_time = os.stat(os.path.join(first.folder, "index.json")).st_mtime_ns
    again = prepare(local(tmp_path, folder)).prepared[0]
    assert again.folder == first.folder  # reused, not rewritten
    assert os.stat(os.path.join(again.folder, "index.json")).st_mtime_ns == index_time
    assert prepare(local(tmp_path, folder, "data.max_tokens=20")).prepared[0].folder != first.folder
    assert prepare(local(tmp_path, folder, "data.dedup=true")).prepared[0].folder != first.folder
    vocabulary = prepare(local(tmp_path, folder, "tokenizer.vocab_size=400"))
    assert vocabulary.prepared[0].folder != first.folder
    with open(folder / "train.de", "a") as f, open(folder / "train.en", "a") as g:
        f.write("Ein neuer Satz.\n")
        g.write("A new sentence.\n")
    changed = prepare(local(tmp_path, folder)).prepared[0]
    assert changed.folder != first.folder and changed.pairs == first.pairs + 1


def test_filters_drop_long_pairs_unbalanced_pairs_and_duplicates(tmp_path):
    long = " ".join(["Wort"] * 60)
    folder = tmp_path / "corpus"
    folder.mkdir()
    source = ["Ein Hund.", "Ein Hund.", "Eine Katze.", long, "Ja.", ""]
    target = ["A dog.", "A dog.", "A cat.", "Words.", " ".join(["yes"] * 30), "Empty."]
    for lang, lines in (("de", source), ("en", target)):
        (folder / f"train.{lang}").write_text("\n".join(lines) + "\n")
        (folder / f"val.{lang}").write_text("\n".join(lines[:2]) + "\n")
    cfg = local(tmp_path, folder, "data.max_tokens=40", "data.max_length_ratio=4",
                "data.dedup=true", "tokenizer.vocab_size=300")  # fmt: skip
    index = prepare(cfg).prepared[0].index
    assert index["pairs"] == 2  # a dog, a cat
    assert index["dropped"] == {"too_long": 1, "length_ratio": 1, "duplicate": 1, "empty": 1}


def test_a_split_may_be_several_files_by_list_or_glob_plain_or_gzip(tmp_path, prepared):
    cfg, training = prepared
    whole = rows(pair_stream(training.prepared[0], seed=0, passes=1))
    folder = tmp_path / "parts"
    folder.mkdir()
    for lang in ("de", "en"):
        lines = (MULTI30K / f"train.{lang}").read_text().splitlines()[:PAIRS]
        (folder / f"news.{lang}").write_text("\n".join(lines[:1000]) + "\n")
        with gzip.open(folder / f"web.{lang}.gz", "wt") as f:
            f.write("\n".join(lines[1000:]) + "\n")
    base = (f"paths.prepared={tmp_path / 'prepared'}", "data.kind=parallel_text",
            f"data.path={folder}", "data.max_pairs=null")  # fmt: skip
    reuse = f"tokenizer.model_dir={tmp_path / 'tokenizer'}"
    training.tokenizers.save(tmp_path / "tokenizer")
    for split in ("[news,web]", "'*'"):
        cfg_parts = settings(tmp_path, *base, f"data.splits.train={split}", reuse)
        parts = prepare(cfg_parts).prepared[0]
        assert rows(pair_stream(parts, seed=0, passes=1)) == whole, split


def test_workers_read_disjoint_shards_that_cover_the_corpus(prepared):
    _, training = prepared
    data = training.prepared[0]
    files = [set(data.shard_files(worker, 2)) for worker in (0, 1)]
    assert not files[0] & files[1] and files[0] | files[1] == set(data.shard_files())
    halves = [rows(pair_stream(data, seed=3, passes=1, worker=w, workers=2)) for w in (0, 1)]
    assert halves[0] + halves[1] == rows(pair_stream(data, seed=3, passes=1))
    assert abs(sum(halves[0].values()) - PAIRS / 2) <= 16  # records of 16 pairs dealt in turn
    with pytest.raises(CorpusError, match="non-empty shards for 17 workers"):
        data.shard_files(0, 17)


def test_several_corpora_are_sampled_by_their_weights(tmp_path):
    for name, word in (("big", "Hund"), ("small", "Katze")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "train.de").write_text("".join(f"{word} {i}\n" for i in range(400)))
        (folder / "train.en").write_text("".join(f"{name} {i}\n" for i in range(400)))
    cfg = local(tmp_path, tmp_path / "big", "tokenizer.vocab_size=300",
                f"data.corpora=[{{path: {tmp_path / 'big'}, weight: 0.8}},"
                f"{{path: {tmp_path / 'small'}, weight: 0.2}}]")  # fmt: skip
    training = prepare(cfg)
    assert [p.pairs for p in training.prepared] == [400, 400]
    targets = training_pairs(training, seed=5).take(5000).map(lambda s, t: t).ragged_batch(5000)
    texts = training.tokenizers.target.detokenize(next(iter(targets))).numpy()
    share = np.mean([text.startswith(b"small ") for text in texts])
    assert share == pytest.approx(0.2, abs=0.02)


def sources_of(prepared, tokenizers) -> list[bytes]:
    """The source sentences of one pass over a preparation."""
    ids = pair_stream(prepared, seed=1).take(prepared.pairs).map(lambda s, t: s)
    return list(tokenizers.source.detokenize(ids.ragged_batch(10_000).get_single_element()).numpy())


def test_each_corpus_keeps_its_own_first_pairs_and_back_translated_sources_are_tagged(tmp_path):
    for name in ("real", "synthetic"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "train.de").write_text("".join(f"{name} {i}\n" for i in range(300)))
        (folder / "train.en").write_text("".join(f"target {i}\n" for i in range(300)))
    (tmp_path / "synthetic" / SYNTHETIC_MARK).write_text("{}")
    corpora = (f"data.corpora=[{{path: {tmp_path / 'real'}, max_pairs: 100}},"
               f"{{path: {tmp_path / 'synthetic'}}}]")  # fmt: skip
    cfg = local(tmp_path, tmp_path / "real", "tokenizer.vocab_size=300", corpora,
                "data.tag_synthetic='<BT>'")  # fmt: skip
    training = prepare(cfg)
    assert [p.pairs for p in training.prepared] == [100, 300]
    real, synthetic = (sources_of(p, training.tokenizers) for p in training.prepared)
    assert sorted(real) == sorted(f"real {i}".encode() for i in range(100))
    assert sorted(synthetic) == sorted(f"<BT> synthetic {i}".encode() for i in range(300))
    plain = local(tmp_path, tmp_path / "real", "tokenizer.vocab_size=300", corpora)
    untagged = prepare(plain, training.tokenizers)  # the same vocabulary, no tag
    assert untagged.prepared[0].folder == training.prepared[0].folder
    assert untagged.prepared[1].folder != training.prepared[1].folder  # the tag is a setting
    assert sources_of(untagged.prepared[1], training.tokenizers) == [s[5:] for s in synthetic]


def test_a_damaged_or_missing_shard_is_one_error_line_naming_it(tmp_path):
    folder = copy_corpus(tmp_path / "corpus", 300)
    cfg = local(tmp_path, folder)
    data = prepare(cfg).prepared[0]
    shard = os.path.join(data.folder, data.index["shards"][3]["file"])
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) - 5)
    script = [sys.executable, str(PROJECT_ROOT / "scripts" / "prepare.py"), "~experiment",
              "data=parallel_text", f"data.path={folder}", "data.source=de", "data.target=en",
              "data.splits.validation=val", "tokenizer=shared", "tokenizer.vocab_size=500",
              f"paths.prepared={tmp_path / 'prepared'}"]  # fmt: skip
    damaged = subprocess.run(script, capture_output=True, text=True)
    assert damaged.returncode == 2
    [error] = [line for line in damaged.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: {shard}: damaged shard (")
    os.remove(shard)
    missing = subprocess.run(script, capture_output=True, text=True)
    assert missing.returncode == 2 and f"error: {shard}: shard missing" in missing.stderr
    with pytest.raises(CorpusError, match="shard missing"):
        Prepared.load(data.folder)


def test_a_killed_preparation_leaves_nothing_complete_and_runs_again_to_the_same_index(tmp_path):
    """SIGKILLed while writing shards, a preparation leaves only its `.partial` folder; the same
    command then prepares from the start, and its index equals an uninterrupted one's."""
    folder = copy_corpus(tmp_path / "corpus", 29000)
    for lang in ("de", "en"):  # 8 times Multi30k: a few seconds of writing
        text = (folder / f"train.{lang}").read_text()
        (folder / f"train.{lang}").write_text(text * 8)
    prepare(local(tmp_path / "first", copy_corpus(tmp_path / "small", 500))).tokenizers.save(
        tmp_path / "tokenizer")  # fmt: skip
    tokenizer = (f"tokenizer.model_dir={tmp_path / 'tokenizer'}", "data.shards=4")
    straight = prepare(local(tmp_path / "straight", folder, *tokenizer)).prepared[0]
    root = tmp_path / "killed" / "prepared"
    script = [sys.executable, str(PROJECT_ROOT / "scripts" / "prepare.py"), "~experiment",
              "data=parallel_text", f"data.path={folder}", "data.source=de", "data.target=en",
              "data.splits.validation=val", "tokenizer=shared", "tokenizer.vocab_size=500",
              *tokenizer, f"paths.prepared={root}"]  # fmt: skip
    process = subprocess.Popen(script, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, partial = time.monotonic() + 120, []
    while time.monotonic() < deadline and not partial:  # kill once shards are being written
        partial = [p for p in root.glob("*.partial/shard-*") if p.stat().st_size > 0]
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert partial, "no shard was being written"
    assert not list(root.glob("*/index.json"))  # nothing looks complete
    finished = subprocess.run(script, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert not list(root.glob("*.partial"))
    [again] = [Prepared.load(str(p.parent)) for p in root.glob("*/index.json")]
    assert again.pairs == straight.pairs > 8 * 28900
    del again.index["seconds"], straight.index["seconds"]
    assert again.index == straight.index


def test_the_vocabulary_sample_is_bounded_by_characters(tmp_path):
    """Long lines make a sample of `tokenizer.max_sentences` pairs too large for the vocabulary
    trainer's memory: it is cut, at random, to `tokenizer.max_sample_chars` characters."""
    from translator.data.prepare import draw_sample
    from translator.data.sources import PairReader

    folder = copy_corpus(tmp_path / "corpus", 2000)
    reader = PairReader(local(tmp_path, folder).data)
    source, target = draw_sample([reader], 1500)
    assert len(source) == 1500
    chars = sum(map(len, source + target)) // 3
    cut_source, cut_target = draw_sample([reader], 1500, max_chars=chars)
    assert sum(map(len, cut_source + cut_target)) <= chars
    pairs = set(zip(source, target, strict=True))
    assert len(cut_source) > 400 and set(zip(cut_source, cut_target, strict=True)) <= pairs
    assert max(source.index(s) for s in cut_source) > 1000  # from all of the sample, not its head
