"""Target prefixes: translations start with the given words and go on from there, on both
engines; a prefix that leaves no room within the length limit is refused."""

import shutil

import pytest

from tests.conftest import compose
from tests.inference.test_ct2 import CT2_FLOAT32, SOURCES, tiny_model
from translator.errors import TranslatorError
from translator.inference.translator import Translator


def tiny_translator(tokenizers, *decode):
    model = tiny_model(tokenizers)  # untrained: its continuations are arbitrary pieces
    return Translator(model, tokenizers, compose(*decode).decode, max_tokens=64)


@pytest.mark.parametrize("search", ["decode=greedy", "decode=beam"])
def test_translations_start_with_their_prefix(multi30k_tokenizers, search):
    translator = tiny_translator(multi30k_tokenizers, search, "decode.max_length_b=20")
    prefixes = ["A man", "", "Two dogs are"]
    found = translator.translate_detailed(SOURCES, prefixes=prefixes)
    assert found[0].text.startswith("A man") and found[2].text.startswith("Two dogs are")
    plain = translator.translate_detailed(SOURCES)
    assert found[1].text == plain[1].text and found[1].score == pytest.approx(plain[1].score)
    assert found[0].text != plain[0].text


def test_a_prefix_without_room_in_the_length_limit_is_refused(multi30k_tokenizers):
    translator = tiny_translator(multi30k_tokenizers, "decode=greedy", "decode.max_length_a=1",
                                 "decode.max_length_b=0")  # fmt: skip
    long = "A man in a blue shirt is riding a red bicycle down the street"
    with pytest.raises(TranslatorError, match=r"prefix 'A man in a blue shirt.*' has \d+ tokens: "
                                              r"no room left within the output length limit "
                                              r"of \d+ for 'Eine Frau liest.'"):  # fmt: skip
        translator.translate_detailed(["Eine Frau liest."], prefixes=[long])
    with pytest.raises(TranslatorError, match="1 prefixes for 3 sentences"):
        translator.translate_detailed(SOURCES, prefixes=["A"])


@pytest.fixture(scope="module")
def run_copy(trained_run, tmp_path_factory):
    """The trained tiny run, copied: the conversion to CTranslate2 writes into it."""
    folder = tmp_path_factory.mktemp("prefix") / "run"
    shutil.copytree(trained_run[0].run_dir, folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("search", [("decode=greedy",), ("decode=beam", "decode.length_penalty=0")])
def test_both_engines_continue_a_prefix_alike(run_copy, multi30k_cfg, search):
    """On 60 real validation sentences, each given the first two words of its reference: the
    same translations from TensorFlow and CTranslate2 for >= 95%, with the same scores."""
    from translator.data import load_corpus
    from translator.inference.ct2_translator import CTranslate2Translator

    corpus = load_corpus(multi30k_cfg.data, "validation")
    sources = corpus.source[:60]
    prefixes = [" ".join(t.split()[:2]) for t in corpus.target[:60]]
    run = run_copy
    ours = Translator.from_run_dir(run, compose(*search).decode)
    theirs = CTranslate2Translator.from_run_dir(run, compose(*search).decode, engine=CT2_FLOAT32)
    a = ours.translate_detailed(sources, prefixes=prefixes)
    b = theirs.translate_detailed(sources, prefixes=prefixes)
    assert all(x.text.startswith(p) for x, p in zip(a, prefixes, strict=True))
    same = [(x, y) for x, y in zip(a, b, strict=True) if x.text == y.text]
    assert len(same) >= 57
    for x, y in same:
        assert y.score == pytest.approx(x.score, abs=1e-3)
