"""CTranslate2: exact conversion of every architecture option, the same translations and scores as
the TensorFlow decoder, the export command, and `engine=ctranslate2` in the commands."""

import itertools
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from omegaconf import OmegaConf

from tests.conftest import compose
from translator.config import PROJECT_ROOT, load_config
from translator.data import load_corpus
from translator.errors import TranslatorError
from translator.inference.ct2_model import write_model
from translator.inference.ct2_translator import CTranslate2Translator, prepare_model
from translator.inference.translator import Translator
from translator.model.transformer import Transformer
from translator.run_dir import RunDir
from translator.tokenizer import END_ID, PAD_ID, START_ID

ctranslate2 = pytest.importorskip("ctranslate2")

CT2_FLOAT32 = load_config("translate", ["engine=ctranslate2", "engine.compute_type=float32"]).engine
SOURCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest."]
TARGETS = ["A man rides a bike.", "Two dogs play in the snow.", "A woman reads a book."]


def tiny_model(tokenizers, **options) -> Transformer:
    keras.utils.set_random_seed(1)
    model = Transformer(
        tokenizers.source.vocab_size,
        tokenizers.target.vocab_size,
        num_layers=2,
        d_model=32,
        num_heads=4,
        dff=64,
        max_positions=64,
        **options,
    )
    ids = np.full((1, 3), START_ID, np.int32)
    model((ids, ids))
    rng = np.random.default_rng(0)
    for variable in model.weights:  # layer norms and dot scales away from 1 and 0
        if variable.path.endswith(("gamma", "beta", "scale")):
            value = rng.normal(0.0, 0.3, variable.shape).astype("float32")
            variable.assign(value + (0.0 if variable.path.endswith("beta") else 1.0))
    return model


def padded(rows, prefix=(), suffix=()):
    rows = [[*prefix, *row, *suffix] for row in rows]
    width = max(map(len, rows))
    return np.array([row + [PAD_ID] * (width - len(row)) for row in rows], np.int32)


OPTIONS = [
    dict(norm_first=n, tie_embeddings=t, share_embeddings=s, attention_score=a)
    for n, t, s, a in itertools.product(
        [False, True], [False, True], [False, True], ["scaled_dot", "dot"]
    )  # fmt: skip
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_every_architecture_option_converts_exactly(options, multi30k_tokenizers, tmp_path):
    """CTranslate2's per-token log-probabilities of real sentences equal our model's."""
    tokenizers = multi30k_tokenizers
    if options["share_embeddings"]:  # one vocabulary for both sides
        tokenizers = type(tokenizers)(tokenizers.source, tokenizers.source)
    model = tiny_model(tokenizers, **options)
    origin = {"run": "r", "weights": "w"}
    folder = write_model(model, tokenizers, tmp_path / "ct2", "float32", origin)
    source = tokenizers.source.tokenize(SOURCES).to_list()
    target = tokenizers.target.tokenize(TARGETS).to_list()
    logits = model((padded(source, [START_ID], [END_ID]), padded(target, [START_ID])))
    log_probs = tf.nn.log_softmax(logits).numpy()

    def pieces(tokenizer, rows):
        return [[p.decode() for p in tokenizer.id_to_piece(row).numpy()] for row in rows]

    scored = ctranslate2.Translator(str(folder), compute_type="float32").score_batch(
        pieces(tokenizers.source, source), pieces(tokenizers.target, target)
    )
    for b, row in enumerate(target):
        expected = log_probs[b, np.arange(len(row) + 1), [*row, END_ID]]
        np.testing.assert_allclose(scored[b].log_probs, expected, atol=1e-4)


def test_additive_attention_is_refused_with_a_reason(multi30k_tokenizers, tmp_path):
    model = tiny_model(multi30k_tokenizers, attention_score="additive")
    with pytest.raises(TranslatorError, match="additive cannot be exported to CTranslate2"):
        write_model(model, multi30k_tokenizers, tmp_path / "ct2", "float32", {})
    assert not (tmp_path / "ct2").exists()


@pytest.fixture(scope="module")
def run_copy(trained_run, tmp_path_factory):
    """The trained tiny run, copied: the conversion writes into it."""
    folder = tmp_path_factory.mktemp("ct2") / "run"
    shutil.copytree(trained_run[0].run_dir, folder)
    return folder


@pytest.fixture(scope="module")
def validation(multi30k_cfg):
    """200 real sentences the tiny run never saw (it memorised 64 training pairs)."""
    return load_corpus(multi30k_cfg.data, "validation").source[:200]


def agreement(run, validation, *decode):
    ours = Translator.from_run_dir(run, compose(*decode).decode)
    theirs = CTranslate2Translator.from_run_dir(run, compose(*decode).decode, engine=CT2_FLOAT32)
    found = ours.translate_detailed(validation), theirs.translate_detailed(validation)
    pairs = list(zip(*found, strict=True))
    same = [(a, b) for a, b in pairs if a.text == b.text]
    return len(same) / len(pairs), same


@pytest.mark.slow
def test_greedy_equals_the_tensorflow_decoder_on_200_sentences(run_copy, validation):
    """Same text for >= 98% of 200 real sentences, and the same scores (summed log-probs)."""
    rate, same = agreement(run_copy, validation, "decode=greedy")
    assert len(validation) == 200 and rate >= 0.98
    for a, b in same:
        assert b.score == pytest.approx(a.score, abs=1e-3)


@pytest.mark.slow
def test_scores_of_given_pairs_equal_the_tensorflow_scorers(run_copy, multi30k_cfg):
    """200 real validation pairs (with an empty target): log P(target | source) per token from
    CTranslate2's score_batch within 1e-3 of the TensorFlow forward pass."""
    corpus = load_corpus(multi30k_cfg.data, "validation")
    sources, targets = corpus.source[:200], [*corpus.target[:199], ""]
    ours = Translator.from_run_dir(run_copy).score(sources, targets)
    theirs = CTranslate2Translator.from_run_dir(run_copy, engine=CT2_FLOAT32).score(
        sources, targets
    )
    assert [s.tokens for s in theirs] == [s.tokens for s in ours] and ours[-1].tokens == 1
    np.testing.assert_allclose([s.per_token for s in theirs], [s.per_token for s in ours],
                               atol=1e-3)  # fmt: skip


@pytest.mark.slow
def test_beam4_equals_the_tensorflow_decoder_where_the_objectives_coincide(run_copy, validation):
    """With alpha = 0 both rank by summed log-probs (CTranslate2's length**alpha and GNMT's
    ((5 + length) / 6)**alpha are both 1)."""
    rate, same = agreement(run_copy, validation, "decode=beam", "decode.length_penalty=0")
    assert rate >= 0.95
    for a, b in same:
        assert b.score == pytest.approx(a.score, abs=1e-3)


@pytest.mark.slow
def test_n_best_lists_are_reranked_with_the_gnmt_penalty(run_copy, validation):
    decode = compose("decode=beam", "decode.n_best=3", "decode.length_penalty=1.0").decode
    theirs = CTranslate2Translator.from_run_dir(run_copy, decode, engine=CT2_FLOAT32)
    for result in theirs.translate_detailed(validation[:20]):
        scores = [score for _, score in result.n_best]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert result.score == scores[0]


@pytest.mark.slow
def test_the_conversion_is_kept_and_redone_when_the_weights_change(run_copy):
    run = RunDir(run_copy)
    folder = prepare_model(run, "auto", None)
    made = (folder / "model.bin").stat().st_mtime_ns
    assert prepare_model(run, "auto", None) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == made  # reused
    weights = run.choose_weights("auto")
    os.utime(weights, ns=(made + 10**9, made + 10**9))  # as if training wrote it again
    prepare_model(run, "auto", None)
    assert (folder / "model.bin").stat().st_mtime_ns != made
    assert json.loads((folder / "converted_from.json").read_text())["weights"] == str(weights)


def script(name, *overrides, text=""):
    return subprocess.run(
        [sys.executable, PROJECT_ROOT / "scripts" / f"{name}.py", *map(str, overrides)],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TRANSLATOR_TEXT": text},
    )  # fmt: skip


@pytest.mark.slow
def test_export_writes_a_model_that_loads_as_its_readme_says(run_copy, validation, tmp_path):
    target = tmp_path / "int8"
    done = script("export", f"run_dir={run_copy}", "format=ctranslate2", "quantization=int8",
                  f"export_dir={target}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    names = {p.name for p in target.iterdir()}
    assert {"model.bin", "config.json", "source.model", "target.model", "README.txt"} <= names
    readme = (target / "README.txt").read_text()
    assert "int8 weights" in readme and "ctranslate2.Translator" in readme
    # The README's recipe, with nothing from this project: a real sentence translates.
    import sentencepiece as spm

    source = spm.SentencePieceProcessor(model_file=str(target / "source.model"))
    target_sp = spm.SentencePieceProcessor(model_file=str(target / "target.model"))
    loaded = ctranslate2.Translator(str(target), compute_type="int8")
    result = loaded.translate_batch([source.encode(validation[0], out_type=str)], beam_size=1)
    assert target_sp.decode(result[0].hypotheses[0]).strip()
    assert os.path.getsize(target / "model.bin") < 0.5 * os.path.getsize(
        prepare_model(RunDir(run_copy), "auto", None) / "model.bin"
    )
    again = script("export", f"run_dir={run_copy}", "format=ctranslate2", f"export_dir={target}")
    assert again.returncode == 2 and "is not empty; pass overwrite=true" in again.stderr


@pytest.mark.slow
def test_translate_and_evaluate_take_engine_ctranslate2(run_copy, validation, tmp_path):
    expected = Translator.from_run_dir(run_copy, compose("decode=greedy").decode)
    done = script("translate", f"run_dir={run_copy}", "engine=ctranslate2", text=validation[0])
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == expected.translate([validation[0]])[0]
    done = script("evaluate", f"run_dir={run_copy}", "engine=ctranslate2",
                  "engine.compute_type=int8", "split=validation", "bootstrap=0")  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    [report] = (run_copy / "eval").glob("multi30k_de_en-validation.*.greedy.ct2-int8.json")
    report = json.loads(report.read_text(encoding="utf-8"))
    assert report["engine"] == "ct2-int8" and 0 <= report["scores"]["bleu"] <= 100


@pytest.mark.parametrize(
    "overrides, named",
    [(["engine=ctranslate2", "engine.compute_type=float64"], "engine.compute_type"),
     (["engine=onnx"], "engine"), (["engine=ctranslate2", "engine.threads=-1"], "engine.threads")],
)  # fmt: skip
def test_bad_engine_settings_are_one_line_errors(run_copy, overrides, named):
    done = script("translate", f"run_dir={run_copy}", *overrides, text="Hallo")
    assert done.returncode == 2, done.stderr[-1500:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0] and "Traceback" not in done.stderr


def test_sampling_settings_pass_through_to_ctranslate2(run_copy, validation):
    """top-k 1 is greedy search; hot sampling strays from it, and a model loaded with the same
    seed (the same command again) draws the same tokens, over batches that would otherwise be
    decoded two at a time by whichever CTranslate2 worker is free."""
    sentences = validation[:48]
    greedy = CTranslate2Translator.from_run_dir(run_copy, compose("decode=greedy").decode,
                                                engine=CT2_FLOAT32)  # fmt: skip
    sample = compose("decode=sample", "decode.sampling_temperature=3.0", "decode.sampling_seed=3",
                     "decode.batch_size=4", "decode.parallel_batches=2").decode  # fmt: skip
    top1 = OmegaConf.merge(sample, {"sampling_topk": 1})
    assert greedy.with_decode(top1).translate(sentences) == greedy.translate(sentences)
    first = CTranslate2Translator.from_run_dir(run_copy, sample, engine=CT2_FLOAT32)
    again = CTranslate2Translator.from_run_dir(run_copy, sample, engine=CT2_FLOAT32)
    drawn = first.translate(sentences)
    assert again.translate(sentences) == drawn
    assert sum(a != b for a, b in zip(drawn, greedy.translate(sentences), strict=True)) > 24
