import collections

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import compose
from translator.data import load_corpus, make_batches, padding_fraction
from translator.data.pipeline import (
    batch_sizes,
    batches_per_pass,
    bucket_boundaries,
    drop_source_tokens,
)
from translator.tokenizer import END_ID, PAD_ID, START_ID, UNK_ID


@pytest.fixture(scope="module")
def valid(multi30k_cfg):
    return load_corpus(multi30k_cfg.data, "validation")


def test_every_batch_has_shapes_dtypes_and_one_token_shift(
    multi30k_cfg, multi30k_tokenizers, valid
):
    data = make_batches(valid, multi30k_tokenizers, multi30k_cfg.data, training=True, seed=1)
    sentences = 0
    for (source, target_in), target_out in data.as_numpy_iterator():
        assert source.dtype == target_in.dtype == target_out.dtype == np.int32
        assert source.ndim == 2 and target_in.shape == target_out.shape
        assert source.shape[0] == target_in.shape[0]
        assert np.all(source[:, 0] == START_ID) and np.all(target_in[:, 0] == START_ID)
        np.testing.assert_array_equal(target_in[:, 1:], target_out[:, :-1])  # the shift
        # Every target_out row ends with END followed only by padding.
        for row in target_out:
            real = row[row != PAD_ID]
            assert real[-1] == END_ID and np.all(row[len(real) :] == PAD_ID)
        assert (
            source.shape[0] * max(source.shape[1], target_in.shape[1] + 1)
            <= multi30k_cfg.data.batch_tokens
        )
        sentences += source.shape[0]
    assert sentences == len(valid)  # nothing over max_tokens=128 in Multi30k validation


def test_bucketing_pads_at_least_twice_less(multi30k_cfg, multi30k_tokenizers, valid):
    bucketed = padding_fraction(
        make_batches(valid, multi30k_tokenizers, multi30k_cfg.data, training=True)
    )
    plain_cfg = compose("experiment=multi30k_de_en", "data.bucket=false").data
    plain = padding_fraction(make_batches(valid, multi30k_tokenizers, plain_cfg, training=True))
    print(f"padding fraction: bucketed {bucketed:.3f}, plain {plain:.3f}")
    assert 0.0 < bucketed and plain >= 2 * bucketed


def test_max_tokens_filters_or_truncates(multi30k_tokenizers, valid):
    cfg = compose("experiment=multi30k_de_en", "data.max_tokens=12", "data.bucket=false")
    kept = sum(b[0][0].shape[0] for b in make_batches(valid, multi30k_tokenizers, cfg.data, False))
    assert 0 < kept < len(valid)
    cfg = compose(
        "experiment=multi30k_de_en", "data.max_tokens=12", "data.truncate=true", "data.bucket=false"
    )
    total = 0
    for (source, target_in), target_out in make_batches(
        valid, multi30k_tokenizers, cfg.data, False
    ):
        assert source.shape[1] <= 12 and target_in.shape[1] <= 11
        assert np.all(np.sum(target_out.numpy() == END_ID, axis=1) == 1)  # truncated rows still end
        total += source.shape[0]
    assert total == len(valid)


def test_shuffle_is_seeded(multi30k_cfg, multi30k_tokenizers, valid):
    def first(seed):
        batches = make_batches(
            valid, multi30k_tokenizers, multi30k_cfg.data, training=True, seed=seed
        )
        return next(iter(batches))[0][0].numpy()

    np.testing.assert_array_equal(first(3), first(3))
    assert not np.array_equal(first(3), first(4))


def test_bucket_boundaries():
    assert bucket_boundaries(16, 4) == [5, 9, 13, 17]


def test_batches_split_evenly_over_replicas(multi30k_cfg, multi30k_tokenizers, valid):
    for bucket in ("true", "false"):
        cfg = compose("experiment=multi30k_de_en", f"data.bucket={bucket}", "data.batch_size=63")
        data = make_batches(valid, multi30k_tokenizers, cfg.data, training=False, replicas=2)
        sizes = [b[0][0].shape[0] for b in data]
        assert all(size % 2 == 0 for size in sizes)
        assert len(valid) - sum(sizes) < len(sizes)  # at most one sentence lost per batch


def test_sampled_training_batches_resegment_the_same_sentences_every_pass(
    multi30k_cfg, multi30k_tokenizers, valid
):
    tokenizer = multi30k_tokenizers.target
    data = make_batches(
        valid, multi30k_tokenizers.sampling(64, 0.1), multi30k_cfg.data, training=True, seed=1
    )

    def one_pass() -> dict[str, list[tuple]]:
        """Text -> the target segmentations a pass gave it (a list: some captions repeat)."""
        segmented = {}
        for _, target_out in data:
            texts = tokenizer.detokenize(target_out).numpy()
            for text, row in zip(texts, target_out.numpy(), strict=True):
                segmented.setdefault(text.decode(), []).append(tuple(row[row != PAD_ID]))
        return segmented

    first, second = one_pass(), one_pass()
    counts = {text: len(rows) for text, rows in first.items()}
    assert counts == {text: len(rows) for text, rows in second.items()}
    assert counts == {text: valid.target.count(text) for text in set(valid.target)}
    resegmented = np.mean([sorted(first[t]) != sorted(second[t]) for t in first])
    print(f"sentences segmented differently in the second pass: {resegmented:.2f}")
    assert resegmented > 0.5


def test_source_dropout_hides_every_real_piece_at_rate_one():
    source = np.array([[START_ID, 5, 6, 7, END_ID, PAD_ID], [START_ID, 8, UNK_ID, END_ID, 0, 0]])
    target = np.array([[START_ID, 9, 10, END_ID], [START_ID, 11, END_ID, PAD_ID]])
    pairs = tf.data.Dataset.from_tensors((source.astype(np.int32), target.astype(np.int32)))
    dropped, kept = next(iter(drop_source_tokens(pairs, 1.0, seed=0)))
    np.testing.assert_array_equal(dropped, [[2, 1, 1, 1, 3, 0], [2, 1, 1, 3, 0, 0]])
    np.testing.assert_array_equal(kept, target)


def test_source_dropout_hides_a_fifth_of_pieces_and_repeats_with_its_seed(
    multi30k_tokenizers, valid
):
    noisy_cfg = compose("experiment=multi30k_de_en", "data.source_dropout=0.2").data
    plain_cfg = compose("experiment=multi30k_de_en").data

    def sources(data) -> list[np.ndarray]:
        return [source for (source, _), _ in data.as_numpy_iterator()]

    def batches(cfg, training: bool):
        return make_batches(valid, multi30k_tokenizers, cfg, training=training, seed=1)

    # Validation batches are left alone.
    noisy, plain = sources(batches(noisy_cfg, False)), sources(batches(plain_cfg, False))
    for a, b in zip(noisy, plain, strict=True):
        np.testing.assert_array_equal(a, b)
    # Training: the same sentences in the same order (seed 1), a fifth of the real pieces hidden.
    first = sources(batches(noisy_cfg, True))
    hidden = real = 0
    for noisy_batch, plain_batch in zip(first, sources(batches(plain_cfg, True)), strict=True):
        changed = noisy_batch != plain_batch
        assert np.all(noisy_batch[changed] == UNK_ID)
        assert not np.any(changed & (plain_batch <= END_ID))  # START, END, PAD and UNK stay
        hidden += changed.sum()
        real += (plain_batch > END_ID).sum()
    print(f"source pieces hidden: {hidden / real:.4f} of {real}")
    assert hidden / real == pytest.approx(0.2, abs=0.01)
    # The same seed draws the same positions.
    for a, b in zip(first, sources(batches(noisy_cfg, True)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_source_dropout_draws_anew_every_pass_and_repeats_with_its_seed():
    source = np.tile(np.arange(4, 68, dtype=np.int32), (8, 1))  # 512 real pieces
    pairs = tf.data.Dataset.from_tensors((source, source))

    def hidden(dataset) -> np.ndarray:
        (dropped, _) = next(iter(dataset))
        return dropped.numpy() == UNK_ID

    noisy = drop_source_tokens(pairs, 0.5, seed=7)
    first, second = hidden(noisy), hidden(noisy)
    assert 0.4 < first.mean() < 0.6 and 0.4 < second.mean() < 0.6
    assert np.mean(first != second) > 0.3  # independent draws differ at about half the places
    np.testing.assert_array_equal(first, hidden(drop_source_tokens(pairs, 0.5, seed=7)))
    assert np.mean(first != hidden(drop_source_tokens(pairs, 0.5, seed=8))) > 0.3


def test_bidirectional_batches_hold_every_pair_once_each_way(
    multi30k_cfg, multi30k_tokenizers, valid
):
    def pairs(data) -> collections.Counter:
        found = collections.Counter()
        for (source, target_in), target_out in data.as_numpy_iterator():
            target = np.concatenate([target_in[:, :1], target_out], axis=1)  # START y1 ... END
            for s, t in zip(source, target, strict=True):
                found[tuple(s[s != PAD_ID]), tuple(t[t != PAD_ID])] += 1
        return found

    forward = pairs(make_batches(valid, multi30k_tokenizers, multi30k_cfg.data, training=False))
    both = pairs(
        make_batches(
            valid, multi30k_tokenizers, multi30k_cfg.data, training=True, seed=1, bidirectional=True
        )
    )
    assert sum(forward.values()) == len(valid)
    assert both == forward + collections.Counter({(t, s): n for (s, t), n in forward.items()})


def fill(batch, batch_tokens: int) -> float:
    """A batch's padded positions (the longer side) as a fraction of the token budget."""
    (source, target_in), _ = batch
    return source.shape[0] * max(source.shape[1], target_in.shape[1] + 1) / batch_tokens


def test_endless_training_batches_are_full_and_an_epoch_is_one_pass(multi30k_tokenizers, valid):
    """Every optimizer step sees at least half the token budget: a bucket's leftover sentences
    at the end of a pass join the next pass's instead of making small batches of their own."""
    data = compose("experiment=multi30k_de_en", "data.batch_tokens=1024").data
    finite = list(make_batches(valid, multi30k_tokenizers, data, training=True, seed=1))
    assert min(fill(b, 1024) for b in finite) < 0.1  # a pass alone ends with tail batches

    per_pass = batches_per_pass(valid, multi30k_tokenizers, data, replicas=1)
    assert len(finite) - len(batch_sizes(data, 1)) < per_pass < len(finite)
    endless = make_batches(valid, multi30k_tokenizers, data, training=True, seed=1, endless=True)
    batches = list(endless.take(3 * round(per_pass)))
    fills = [fill(b, 1024) for b in batches]
    print(f"endless batches: fill {min(fills):.2f} to {max(fills):.2f} of the budget")
    assert 0.5 <= min(fills) and max(fills) <= 1.0
    # Three epochs of batches hold three passes' sentences, but for those still waiting in a
    # bucket (less than a batch of each).
    sentences = sum(b[0][0].shape[0] for b in batches)
    assert abs(sentences - 3 * len(valid)) < sum(batch_sizes(data, 1))


def test_training_batches_hold_joined_sentences(multi30k_tokenizers):
    longest = {}
    for rate in (0.0, 0.5):
        cfg = compose("experiment=multi30k_de_en", f"data.concat={rate}", "data.max_pairs=400")
        valid = load_corpus(cfg.data, "validation")
        rows, longest[rate] = 0, 0
        batches = make_batches(valid, multi30k_tokenizers, cfg.data, training=True, seed=1)
        for (source, _), target_out in batches.as_numpy_iterator():
            assert np.all(np.sum(source == END_ID, axis=1) == 1)
            assert np.all(np.sum(target_out == END_ID, axis=1) == 1)
            length = np.sum(source != PAD_ID, axis=1)
            assert np.all(length <= cfg.data.max_tokens)
            longest[rate] = max(longest[rate], int(np.max(length)))
            rows += source.shape[0]
        if rate == 0:
            assert rows == 400
        else:  # about 1 / (0.5 + 0.5 * 2.5) = 0.57 examples per pair
            assert 400 / 3 < rows < 400 * 0.7, rows
    assert longest[0.5] > 1.5 * longest[0.0]
    # Validation batches are never joined.
    cfg = compose("experiment=multi30k_de_en", "data.concat=1.0", "data.max_pairs=400")
    rows = sum(s.shape[0] for (s, _), _ in make_batches(
        valid, multi30k_tokenizers, cfg.data, training=False).as_numpy_iterator())  # fmt: skip
    assert rows == 400
