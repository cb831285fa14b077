import time

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import compose
from translator.data import load_corpus
from translator.tokenizer import END_ID, PAD_ID, START_ID, UNK_ID, TokenizerPair, train_tokenizers


def round_trip_rate(tokenizer, sentences):
    back = tokenizer.detokenize(tokenizer.tokenize(sentences)).numpy()
    return np.mean([b.decode("utf-8") == s for b, s in zip(back, sentences, strict=True)])


def test_multi30k_round_trip_and_vocab_build_time(multi30k_cfg):
    train = load_corpus(multi30k_cfg.data, "train")
    start = time.perf_counter()
    pair = train_tokenizers(train.source, train.target, multi30k_cfg.tokenizer)
    seconds = time.perf_counter() - start
    valid = load_corpus(multi30k_cfg.data, "validation")
    source_rate = round_trip_rate(pair.source, valid.source)
    target_rate = round_trip_rate(pair.target, valid.target)
    print(
        f"multi30k de-en vocab build {seconds:.1f}s, "
        f"round trip de {source_rate:.4f} en {target_rate:.4f}"
    )
    assert seconds < 120
    assert source_rate >= 0.99 and target_rate >= 0.99
    assert pair.source.vocab_size == pair.target.vocab_size == 8000


def test_tatoeba_round_trip():
    cfg = compose("experiment=tatoeba_es_en", "tokenizer.vocab_size=4000")
    train = load_corpus(cfg.data, "train")
    pair = train_tokenizers(train.source, train.target, cfg.tokenizer)
    valid = load_corpus(cfg.data, "validation")
    assert round_trip_rate(pair.source, valid.source) >= 0.99
    assert round_trip_rate(pair.target, valid.target) >= 0.99


def test_special_token_ids_fixed(multi30k_tokenizers):
    pieces = multi30k_tokenizers.target.id_to_piece([PAD_ID, UNK_ID, START_ID, END_ID]).numpy()
    assert [p.decode() for p in pieces] == ["<pad>", "<unk>", "<s>", "</s>"]
    ids = multi30k_tokenizers.target.tokenize(["A dog runs."]).to_list()[0]
    assert min(ids) >= 4  # ordinary text never produces a reserved id


def test_unseen_characters_round_trip_through_bytes(multi30k_tokenizers):
    text = ["Ünïcødé 日本語 😀 — “quotes”"]
    assert (
        multi30k_tokenizers.source.detokenize(multi30k_tokenizers.source.tokenize(text))
        .numpy()[0]
        .decode()
        == text[0]
    )


def test_detokenize_stops_at_end_and_drops_pad_and_start(multi30k_tokenizers):
    tok = multi30k_tokenizers.target
    ids = tok.tokenize(["A dog runs.", "Two cats."]).to_list()
    row_0 = [START_ID, *ids[0], END_ID, *ids[1]]  # text after END must be ignored
    row_1 = [START_ID, *ids[1], END_ID]
    dense = tf.constant([row_0, row_1 + [PAD_ID] * (len(row_0) - len(row_1))])
    assert [s.decode() for s in tok.detokenize(dense).numpy()] == ["A dog runs.", "Two cats."]


def test_save_and_load_identical(tmp_path, multi30k_tokenizers):
    multi30k_tokenizers.save(tmp_path)
    loaded = TokenizerPair.load(tmp_path)
    text = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]
    assert (
        loaded.source.tokenize(text).to_list()
        == multi30k_tokenizers.source.tokenize(text).to_list()
    )
    assert loaded.target.vocab_size == multi30k_tokenizers.target.vocab_size


@pytest.mark.parametrize("shared", [True, False])
def test_shared_and_lowercase_options(shared):
    cfg = compose(
        "data=multi30k_en_de",
        f"tokenizer.shared={shared}",
        "tokenizer.lowercase=true",
        "tokenizer.vocab_size=2000",
    )
    train = load_corpus(cfg.data, "train")
    pair = train_tokenizers(train.source[:5000], train.target[:5000], cfg.tokenizer)
    assert (pair.source is pair.target) == shared
    out = pair.source.detokenize(pair.source.tokenize(["A Man WITH a Hat."])).numpy()[0].decode()
    assert out == "a man with a hat."


def test_tokenizer_survives_set_random_seed(multi30k_tokenizers):
    # tf.random.set_seed clears TensorFlow's eager kernel cache, which deletes tf-text's
    # kernel-owned SentencePiece resource: raw tf-text then fails with NotFoundError.
    import keras

    tokenizer = multi30k_tokenizers.target
    expected = tokenizer.tokenize(["A dog runs."]).to_list()
    keras.utils.set_random_seed(123)
    assert tokenizer.tokenize(["A dog runs."]).to_list() == expected
    assert tokenizer.detokenize(tf.constant(expected)).numpy()[0].decode() == "A dog runs."
    keras.utils.set_random_seed(124)
    assert tokenizer.id_to_piece([END_ID]).numpy()[0].decode() == "</s>"


def test_sampling_varies_segmentations_that_all_detokenize_to_the_text(
    multi30k_cfg, multi30k_tokenizers
):
    sentences = load_corpus(multi30k_cfg.data, "validation").target[:300]
    best = multi30k_tokenizers.target
    sampler = best.sampling(64, 0.1)
    assert sampler.samples and not best.samples
    assert best.sampling(0, 0.1) is best and best.sampling(1, 0.1) is best

    deterministic = best.tokenize(sentences).to_list()
    first, second = sampler.tokenize(sentences).to_list(), sampler.tokenize(sentences).to_list()
    assert best.tokenize(sentences).to_list() == deterministic
    changed = np.mean([a != b for a, b in zip(first, deterministic, strict=True)])
    resampled = np.mean([a != b for a, b in zip(first, second, strict=True)])
    print(f"sampled differs from best: {changed:.2f}, between two samples: {resampled:.2f}")
    assert changed > 0.5 and resampled > 0.5
    assert round_trip_rate(sampler, sentences) == 1.0  # every sample spells the same text


def test_sampling_pair_keeps_sharing_and_is_not_saved(tmp_path, multi30k_tokenizers):
    pair = multi30k_tokenizers.sampling(-1, 0.2)
    assert pair.samples and not multi30k_tokenizers.samples
    shared = multi30k_tokenizers.source is multi30k_tokenizers.target
    assert (pair.source is pair.target) == shared
    pair.save(tmp_path)
    loaded = TokenizerPair.load(tmp_path)
    text = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]
    assert not loaded.samples
    assert (
        loaded.source.tokenize(text).to_list()
        == multi30k_tokenizers.source.tokenize(text).to_list()
    )
