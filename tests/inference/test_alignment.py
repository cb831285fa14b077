"""Word alignments: pieces to words, links from literal attention, the diagonal of a model
trained here to copy its input, CTranslate2's attention equal to ours, texts of sentences."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import compose
from tests.inference.test_ct2 import SOURCES, padded, tiny_model
from translator.errors import TranslatorError
from translator.inference.alignment import links, pharaoh, word_of_pieces
from translator.inference.ct2_translator import CTranslate2Translator
from translator.inference.paragraphs import translate_texts
from translator.inference.translator import Translator
from translator.model.transformer import Transformer
from translator.segmentation import Segmenter
from translator.tokenizer import END_ID, PAD_ID, START_ID, TokenizerPair


def test_pieces_map_to_the_words_of_their_text():
    pieces = ["<s>", "▁Ein", "▁Mann", "▁fähr", "t", ".", "</s>"]
    assert word_of_pieces(pieces) == [None, 0, 1, 2, 2, 2, None]  # "Ein Mann fährt."
    assert word_of_pieces(["¿", "▁Qu", "é", "?", "</s>"]) == [0, 1, 1, 1, None]  # no "▁" first
    assert word_of_pieces(["▁", "«", "▁Hola", "»"]) == [0, 0, 1, 1]  # "« Hola»"


def test_links_follow_each_target_pieces_most_attended_source_word():
    source = ["<s>", "▁das", "▁Haus", "▁ist", "▁groß", "</s>"]
    target = ["▁the", "▁house", "▁is", "▁bi", "g", "</s>"]
    cross = np.full((6, 6), 0.01)
    for row, column in enumerate([1, 2, 3, 4, 4, 5]):  # END attends to END: excluded
        cross[row, column] = 0.9
    cross[0, 0] = 0.95  # START is never a link: the next best, "das", is
    assert links(cross, source, target) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert pharaoh(links(cross, source, target)) == "0-0 1-1 2-2 3-3"
    assert links(np.zeros((1, 2)), ["<s>", "</s>"], ["</s>"]) == []


def copy_model(tokenizers, sentences, epochs):
    """A 2-layer model trained to copy `sentences`."""
    keras.utils.set_random_seed(0)
    vocab = tokenizers.source.vocab_size
    model = Transformer(vocab, vocab, num_layers=2, d_model=64, num_heads=4, dff=128,
                        dropout=0.0, max_positions=64)  # fmt: skip
    ids = tokenizers.source.tokenize(sentences).to_list()
    source = padded(ids, [START_ID], [END_ID])
    target_in, target_out = padded(ids, [START_ID]), padded(ids, suffix=[END_ID])
    weights = (target_out != PAD_ID).astype("float32")
    model.compile(keras.optimizers.Adam(2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    model.fit((source, target_in), target_out, sample_weight=weights, batch_size=64,
              epochs=epochs, verbose=0)  # fmt: skip
    return model


def random_sentences(tokenizer, words: list[str], count: int, seed: int) -> list[str]:
    """`count` sequences of 3 to 8 words drawn from those of `words` that are one piece each:
    too many to memorise, so the model must learn to copy by attending to the source."""
    single = sorted({w for w in words if len(tokenizer.tokenize([w]).to_list()[0]) == 1})[:400]
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(single, rng.integers(3, 9))) for _ in range(count)]


def alignment_error(found, sure):
    """AER with every link sure: 1 - 2|A ∩ S| / (|A| + |S|)."""
    return 1 - 2 * len(set(found) & set(sure)) / (len(found) + len(sure))


@pytest.mark.slow
def test_a_model_that_copies_its_input_aligns_on_the_diagonal(multi30k_cfg, multi30k_tokenizers):
    """Trained here on 6,000 random word sequences (6 passes), tested on 64 new ones: where it
    copies exactly, word i of the output is linked to word i of the input (AER <= 0.1)."""
    from translator.data import load_corpus

    tokenizers = TokenizerPair(multi30k_tokenizers.source, multi30k_tokenizers.source)
    words = " ".join(load_corpus(multi30k_cfg.data, "validation").source).split()
    train = random_sentences(tokenizers.source, words, 6000, seed=0)
    model = copy_model(tokenizers, train, epochs=6)
    translator = Translator(model, tokenizers, compose("decode=greedy").decode, max_tokens=64)
    tests = random_sentences(tokenizers.source, words, 64, seed=1)
    found = translator.translate_detailed(tests, alignment=-1)
    copied = [(s, t) for s, t in zip(tests, found, strict=True) if t.text == s]
    assert len(copied) >= 24  # copies exactly at least a third: the links of those are checked
    errors = [alignment_error(t.alignment, [(i, i) for i in range(len(s.split()))])
              for s, t in copied]  # fmt: skip
    assert np.mean(errors) <= 0.1, np.mean(errors)


def test_alignment_refers_to_words_of_both_sides(multi30k_tokenizers):
    decode = compose("decode=beam", "decode.max_length_b=12").decode
    translator = Translator(tiny_model(multi30k_tokenizers), multi30k_tokenizers, decode, 64)
    found = translator.translate_detailed([*SOURCES, ""], alignment=-1)
    for source, result in zip(SOURCES, found, strict=False):
        assert result.alignment and result.attention is None  # links only, as asked
        assert all(0 <= i < len(source.split()) for i, _ in result.alignment)
        assert all(0 <= j < len(result.text.split()) for _, j in result.alignment)
    assert found[-1].text == "" and not found[-1].alignment
    with pytest.raises(TranslatorError, match="alignment_layer=2: the model has 2 decoder"):
        translator.translate_detailed(SOURCES, alignment=2)


def test_a_segmented_texts_links_count_words_from_its_start(multi30k_tokenizers):
    decode = compose("decode=greedy", "decode.max_length_b=6").decode
    translator = Translator(tiny_model(multi30k_tokenizers), multi30k_tokenizers, decode, 64)
    text = f"{SOURCES[0]}  {SOURCES[1]}"
    whole = translate_texts(translator, [text], Segmenter("de"), alignment=-1)[0]
    parts = translator.translate_detailed(SOURCES[:2], alignment=-1)
    words = (len(SOURCES[0].split()), len(parts[0].text.split()))
    second = [(i + words[0], j + words[1]) for i, j in parts[1].alignment]
    assert whole.alignment == parts[0].alignment + second


def test_ctranslate2_returns_our_last_layers_attention_averaged_over_heads(
    multi30k_tokenizers, tmp_path
):
    """Rows: the tokens it produced; columns: the source pieces (it drops the START and END it
    adds itself)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    import sentencepiece as spm

    from translator.inference.ct2_model import write_model

    model = tiny_model(multi30k_tokenizers)
    origin = {"run": "r", "weights": "w"}
    folder = write_model(model, multi30k_tokenizers, tmp_path / "ct2", "float32", origin)
    source = multi30k_tokenizers.source.tokenize(SOURCES).to_list()
    engine = ctranslate2.Translator(str(folder), compute_type="float32")
    pieces = [[p.decode() for p in multi30k_tokenizers.source.id_to_piece(row).numpy()]
              for row in source]  # fmt: skip
    found = engine.translate_batch(pieces, return_attention=True, return_end_token=True,
                                   max_decoding_length=6, beam_size=1)  # fmt: skip
    vocab = spm.SentencePieceProcessor(model_proto=multi30k_tokenizers.target.model_proto)
    target = [[vocab.piece_to_id(p) for p in result.hypotheses[0]] for result in found]
    memory, padding, _ = model.encode(padded(source, [START_ID], [END_ID]))
    _, _, cross = model.decode(padded(target, [START_ID]), memory, padding)
    ours = tf.reduce_mean(cross[-1], axis=1).numpy()  # (B, T, S): heads averaged
    for b, result in enumerate(found):
        rows, columns = len(target[b]), len(source[b])
        ours_b = ours[b, :rows, 1 : columns + 1]
        np.testing.assert_allclose(np.asarray(result.attention[0]), ours_b, atol=1e-4)
    ct2 = CTranslate2Translator(engine, multi30k_tokenizers, compose("decode=greedy").decode,
                                max_tokens=64, max_positions=64)  # fmt: skip
    tf_translator = Translator(model, multi30k_tokenizers, compose("decode=greedy").decode, 64)
    theirs = ct2.translate_detailed(SOURCES, alignment=-1)
    for a, b in zip(theirs, tf_translator.translate_detailed(SOURCES, alignment=-1), strict=True):
        assert a.text == b.text and a.alignment == b.alignment
    with pytest.raises(TranslatorError, match="engine=ctranslate2 aligns with the last layer"):
        ct2.translate_detailed(SOURCES, alignment=0)
