"""Translator on the trained tiny run: batching, search settings, bad inputs, export."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.conftest import compose
from translator.config import PROJECT_ROOT, load_config
from translator.data import load_corpus
from translator.errors import RunDirError, TranslatorError
from translator.inference.translator import Translator

pytestmark = pytest.mark.slow


def decode(*overrides):
    return compose(*overrides).decode


@pytest.fixture(scope="module")
def sentences(trained_run):
    cfg, _ = trained_run
    corpus = load_corpus(cfg.data, "train")
    return corpus.source, corpus.target


@pytest.fixture(scope="module")
def greedy(trained_run):
    return Translator.from_run_dir(trained_run[0].run_dir, decode("decode=greedy"))


def test_alone_equals_inside_a_padded_batch(trained_run, greedy, sentences):
    source, _ = sentences
    short = min(source, key=len)
    longest = sorted(source, key=len)[-5:]
    for translator in (
        greedy,
        Translator.from_run_dir(trained_run[0].run_dir, decode("decode=beam")),
    ):
        alone = translator.translate_detailed([short])[0]
        batched = translator.translate_detailed([*longest, short])[-1]
        assert alone.text == batched.text
        assert alone.score == pytest.approx(batched.score, abs=1e-4)


def test_translations_keep_the_case_of_cased_training(trained_run, greedy, sentences):
    """The tiny run trains on cased text (tokenizer.lowercase=false): its translations begin
    with a capital where the references do."""
    source, target = sentences
    assert not trained_run[0].tokenizer.lowercase
    hypotheses = greedy.translate(source)
    capitalised = [h for h, t in zip(hypotheses, target, strict=True) if t[:1].isupper()]
    assert len(capitalised) > 50  # Multi30k captions start with a capital
    assert sum(h[:1].isupper() for h in capitalised) >= 0.95 * len(capitalised)


def test_beam_size_one_equals_greedy(trained_run, greedy, sentences):
    source, _ = sentences
    beam1 = Translator.from_run_dir(
        trained_run[0].run_dir,
        decode("decode=beam", "decode.beam_size=1", "decode.length_penalty=0"),
    )
    ours, theirs = greedy.translate_detailed(source[:16]), beam1.translate_detailed(source[:16])
    assert [t.text for t in ours] == [t.text for t in theirs]
    np.testing.assert_allclose([t.score for t in ours], [t.score for t in theirs], atol=1e-4)


def test_cached_and_uncached_search_agree(trained_run, greedy, sentences):
    source, _ = sentences
    uncached = Translator.from_run_dir(
        trained_run[0].run_dir, decode("decode=greedy", "decode.use_cache=false")
    )
    assert uncached.translate(source[:8]) == greedy.translate(source[:8])


def test_n_best_lists_are_sorted(trained_run, sentences):
    # Whether the run reproduces its training targets is test_evaluate's business (BLEU > 90):
    # the exact sentences it gets right differ between CPUs, so no test here depends on them.
    source, _ = sentences
    beam = Translator.from_run_dir(trained_run[0].run_dir, decode("decode=beam", "decode.n_best=3"))
    results = beam.translate_detailed(source[:4])
    single = Translator.from_run_dir(trained_run[0].run_dir, decode("decode=beam"))
    for result, best in zip(results, single.translate_detailed(source[:4]), strict=True):
        texts, scores = zip(*result.n_best, strict=True)
        assert len(texts) == 3 and list(scores) == sorted(scores, reverse=True)
        assert result.text == texts[0] == best.text
        assert scores[0] == pytest.approx(best.score, abs=1e-4)


def test_empty_unicode_and_overlong_inputs(greedy, capsys):
    weird = [
        "",
        "   ",
        "😀🚀 ☃",
        "שלום עולם",
        "日本語のテキスト",
        "e\u0301\u200b\x07",
        "Hund " * 300,
    ]
    out = greedy.translate(weird)
    assert out[0] == "" and out[1] == ""
    assert all(isinstance(text, str) for text in out)
    assert "warning: source truncated to 128 tokens" in capsys.readouterr().err


def test_attention_rows_sum_to_one_over_real_keys(greedy, sentences):
    source, _ = sentences
    result = greedy.translate_detailed(source[:2], attention=True)[0]
    s, t = len(result.source_pieces), len(result.target_pieces)
    assert result.source_pieces[0] == "<s>" and result.source_pieces[-1] == "</s>"
    assert result.target_pieces[-1] == "</s>" and "<s>" not in result.target_pieces
    assert result.target_input_pieces[0] == "<s>" and "</s>" not in result.target_input_pieces
    assert result.target_input_pieces[1:] == result.target_pieces[:-1]
    for kind, shape in [("cross", (t, s)), ("encoder_self", (s, s)), ("decoder_self", (t, t))]:
        for layer in result.attention[kind]:
            assert layer.shape == (4, *shape)
            np.testing.assert_allclose(layer.sum(-1), 1.0, atol=1e-5)


def test_missing_and_incomplete_run_dirs(trained_run, tmp_path):
    with pytest.raises(RunDirError, match="run directory not found"):
        Translator.from_run_dir(tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(trained_run[0].run_dir, broken)
    (broken / "tokenizer" / "target.model").unlink()
    with pytest.raises(
        RunDirError, match="incomplete run directory, missing tokenizer/target.model"
    ):
        Translator.from_run_dir(broken)
    shutil.copytree(trained_run[0].run_dir, tmp_path / "no_weights")
    for name in ("best.weights.h5", "last.weights.h5"):
        (tmp_path / "no_weights" / name).unlink()
    missing = "no averaged.weights.h5 or best.weights.h5 or last.weights.h5"
    with pytest.raises(RunDirError, match=missing):
        Translator.from_run_dir(tmp_path / "no_weights")


def damage(path, how):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncate" else how)


@pytest.mark.parametrize(
    ("name", "how", "message"),
    [
        ("averaged.weights.h5", "truncate", "averaged.weights.h5: cannot load these weights"),
        ("best.weights.h5", b"not hdf5 at all", "best.weights.h5: cannot load these weights"),
        ("config.yaml", b"data: [unclosed\n  - ", "config.yaml: not a readable config"),
        ("model.json", "truncate", "model.json: not valid JSON"),
        ("tokenizer/target.model", "truncate", "tokenizer: damaged tokenizer"),
        ("tokenizer/source.json", b"{", "tokenizer: damaged tokenizer"),
    ],
)  # fmt: skip
def test_damaged_runs_are_one_line_naming_the_file(trained_run, tmp_path, name, how, message):
    run = tmp_path / "run"
    shutil.copytree(trained_run[0].run_dir, run)
    shutil.copy(run / "best.weights.h5", run / "averaged.weights.h5")  # auto picks averaged
    damage(run / name, how)
    weights = "best" if name == "best.weights.h5" else "auto"
    with pytest.raises(RunDirError, match=message) as error:
        Translator.from_run_dir(run, weights=weights)
    assert "\n" not in str(error.value) and str(run) in str(error.value)


# The probe list of the reliability issue, run as a user would: the translate script.
PROBES = [
    ("truncated weights", "best.weights.h5", "truncate", [], "best.weights.h5"),
    ("config.yaml that does not parse", "config.yaml", b"data: [unclosed\n  - ", [],
     "config.yaml"),
    ("model.json cut short", "model.json", "truncate", [], "model.json"),
    ("beam size 0", None, None, ["decode=beam", "decode.beam_size=0"], "decode.beam_size=0"),
    ("negative beam size", None, None, ["decode.beam_size=-3"], "decode.beam_size=-3"),
    ("length penalty not a number", None, None, ["decode.length_penalty=abc"],
     "decode.length_penalty=abc"),
    ("missing tokenizer", "tokenizer/target.model", b"", [], "tokenizer"),
    ("unknown strategy", None, None, ["decode.strategy=sample"], "decode.strategy='sample'"),
    ("unknown key", None, None, ["decode.temperature=2"], "decode.temperature"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "name", "how", "overrides", "named"), PROBES,
                         ids=[p[0] for p in PROBES])  # fmt: skip
def test_each_probe_is_one_error_line_and_exit_2(trained_run, tmp_path, case, name, how,
                                                 overrides, named):  # fmt: skip
    run = tmp_path / "run"
    shutil.copytree(trained_run[0].run_dir, run)
    if name:
        damage(run / name, how) if how else (run / name).unlink()
    done = subprocess.run(
        [sys.executable, PROJECT_ROOT / "scripts" / "translate.py", f"run_dir={run}", "text=Hallo",
         *overrides],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-1500:]
    assert "Traceback" not in done.stderr and done.stdout == ""
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and named in error[0], done.stderr[-1500:]


def test_a_tokenizer_that_does_not_fit_the_model_is_refused(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run[0].run_dir, run)
    settings = json.loads((run / "model.json").read_text())
    settings["target_vocab_size"] += 1
    (run / "model.json").write_text(json.dumps(settings))
    with pytest.raises(RunDirError, match=r"the target vocabulary has \d+ pieces but the model"):
        Translator.from_run_dir(run)


def script(name, *overrides, stdin=None):
    return subprocess.run(
        [sys.executable, PROJECT_ROOT / "scripts" / f"{name}.py", *overrides],
        input=stdin, capture_output=True, cwd=PROJECT_ROOT,
    )  # fmt: skip


def test_translate_script_file_to_file(trained_run, greedy, sentences, tmp_path):
    source, _ = sentences
    src = tmp_path / "src.de"
    src.write_text("\n".join([source[0], "", source[1]]) + "\n", encoding="utf-8")
    out = tmp_path / "hyp.en"
    done = script("translate", f"run_dir={trained_run[0].run_dir}", f"input={src}", f"output={out}")
    assert done.returncode == 0, done.stderr.decode()[-1500:]
    expected = greedy.translate([source[0], source[1]])  # the run's decode settings: greedy
    assert out.read_text(encoding="utf-8").split("\n") == [expected[0], "", expected[1], ""]
    assert b"translating" in done.stderr  # the progress bar

    out.write_text("keep me")
    again = script(
        "translate", f"run_dir={trained_run[0].run_dir}", f"input={src}", f"output={out}"
    )
    assert again.returncode == 2 and out.read_text() == "keep me"
    assert again.stderr.decode().strip().splitlines()[-1] == (
        f"error: {out} exists; pass overwrite=true to replace it"
    )


def test_translate_script_stdin_and_bad_inputs(trained_run, greedy, sentences, tmp_path):
    source, _ = sentences
    piped = script("translate", f"run_dir={trained_run[0].run_dir}",
                   stdin=f"{source[2]}\n\n{source[3]}\n".encode())  # fmt: skip
    assert piped.returncode == 0, piped.stderr.decode()[-1500:]
    expected = greedy.translate([source[2], source[3]])
    assert piped.stdout.decode().split("\n") == [expected[0], "", expected[1], ""]

    bad = tmp_path / "bad.de"
    bad.write_bytes(b"gut\n\xc3\x28 kaputt\n")
    lenient = script("translate", f"run_dir={trained_run[0].run_dir}", f"input={bad}")
    assert lenient.returncode == 0 and len(lenient.stdout.decode().splitlines()) == 2
    assert f"warning: {bad}:2: invalid UTF-8 (byte 0xc3)" in lenient.stderr.decode()
    failed = script("translate", f"run_dir={trained_run[0].run_dir}", f"input={bad}", "strict=true")
    last = failed.stderr.decode().strip().splitlines()[-1]
    assert failed.returncode == 2 and last == f"error: {bad}:2: invalid UTF-8 (byte 0xc3)"
    assert failed.stdout.decode().splitlines() == greedy.translate(["gut"])  # the line before

    missing = script("translate", f"run_dir={tmp_path / 'nope'}", "text=Hallo")
    last = missing.stderr.decode().strip().splitlines()[-1]
    assert (
        missing.returncode == 2 and last == f"error: {tmp_path / 'nope'}: run directory not found"
    )


def test_an_invalid_utf8_line_on_stdin_costs_only_itself(trained_run, greedy, sentences):
    source, _ = sentences
    good = [s.encode() for s in source[10:14]]
    piped = b"\n".join([good[0], good[1], b"kaputt \xff\xfe", good[2], good[3]]) + b"\n"
    done = script("translate", f"run_dir={trained_run[0].run_dir}", stdin=piped)
    assert done.returncode == 0, done.stderr.decode()[-1500:]
    lines = done.stdout.decode().split("\n")
    expected = greedy.translate([*source[10:12], "kaputt \ufffd\ufffd", *source[12:14]])
    assert lines == [*expected, ""]  # five lines in, five out, in order
    assert "warning: <stdin>:3: invalid UTF-8 (byte 0xff)" in done.stderr.decode()

    strict = script("translate", f"run_dir={trained_run[0].run_dir}", "strict=true", stdin=piped)
    assert strict.returncode == 2
    assert strict.stdout.decode().splitlines() == expected[:2]  # the lines before it
    last = strict.stderr.decode().strip().splitlines()[-1]
    assert last == "error: <stdin>:3: invalid UTF-8 (byte 0xff)"


def test_export_reloads_with_only_tensorflow_and_gives_the_same_strings(
    trained_run, greedy, sentences, tmp_path
):
    from translator.inference.export import export

    source, _ = sentences
    cfg = load_config(
        "export", [f"run_dir={trained_run[0].run_dir}", f"export_dir={tmp_path / 'sm'}"]
    )
    export(cfg)
    with pytest.raises(TranslatorError, match="is not empty; pass overwrite=true"):
        export(cfg)
    batch = [source[5], "", source[6], "😀 ☃"]
    probe = (
        "import json, sys, tensorflow as tf, tensorflow_text\n"
        f"f = tf.saved_model.load({str(tmp_path / 'sm')!r}).signatures['serving_default']\n"
        f"out = f(sentences=tf.constant({batch!r}))['translations'].numpy()\n"
        "assert 'translator' not in sys.modules  # the project's code is not needed\n"
        "print(json.dumps([s.decode('utf-8') for s in out]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": ""})  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-1500:]
    assert json.loads(done.stdout.decode().strip().splitlines()[-1]) == greedy.translate(batch)


def run_with_decode(trained_run, folder, **decode):
    """A copy of the trained run whose config names other decode settings."""
    shutil.copytree(trained_run[0].run_dir, folder)
    config = OmegaConf.load(folder / "config.yaml")
    config.decode = OmegaConf.merge(config.decode, decode)
    OmegaConf.save(config, folder / "config.yaml")
    return folder


def test_commands_decode_as_the_run_says_unless_told_otherwise(trained_run, tmp_path):
    run = run_with_decode(trained_run, tmp_path / "beam_run", strategy="beam", beam_size=3,
                          length_penalty=0.8, n_best=2)  # fmt: skip

    def settings(*overrides):
        cfg = load_config("translate", [f"run_dir={run}", *overrides])
        return OmegaConf.to_container(Translator.from_command(cfg).decode)

    own = settings()
    assert (own["strategy"], own["beam_size"], own["length_penalty"], own["n_best"]) == (
        "beam", 3, 0.8, 2)  # fmt: skip
    assert own["max_length_b"] == trained_run[0].decode.max_length_b
    one_key = settings("decode.beam_size=6")
    assert (one_key["strategy"], one_key["beam_size"], one_key["length_penalty"]) == (
        "beam",
        6,
        0.8,
    )
    preset = settings("decode=greedy")
    assert preset == OmegaConf.to_container(load_config("translate", ["decode=greedy"]).decode)


def test_decode_settings_fill_keys_an_older_run_lacks():
    from translator.inference.translator import decode_settings

    old = OmegaConf.create({"strategy": "beam", "beam_size": 4, "length_penalty": 0.6})
    merged = decode_settings(old, OmegaConf.create({"beam_size": None, "batch_size": 8}))
    assert (merged.strategy, merged.beam_size, merged.batch_size) == ("beam", 4, 8)
    assert merged.use_cache is True and merged.max_length_a == 1.5  # from decode/greedy.yaml


def test_inference_runs_in_float32_whatever_the_process_policy(trained_run):
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # e.g. after training in bf16
    model = Translator.from_run_dir(trained_run[0].run_dir).model
    assert model.compute_dtype == "float32"
    assert model.decoder.layers[0].self_attention.compute_dtype == "float32"


def test_export_replaces_a_folder_only_whole_and_when_told(trained_run, tmp_path):
    from translator.inference.export import export

    target = tmp_path / "sm"
    target.mkdir()  # an empty folder is fine to export into
    export(load_config("export", [f"run_dir={trained_run[0].run_dir}", f"export_dir={target}"]))
    before = (target / "saved_model.pb").stat().st_mtime_ns
    cfg = load_config("export", [f"run_dir={trained_run[0].run_dir}", f"export_dir={target}",
                                 "overwrite=true", "decode.batch_size=0"])  # fmt: skip
    with pytest.raises(TranslatorError, match="decode.batch_size=0"):
        export(cfg)  # refused before anything is written
    assert (target / "saved_model.pb").stat().st_mtime_ns == before
    assert not (tmp_path / "sm.partial").exists()


def test_export_uses_the_runs_decode_settings(trained_run, tmp_path):
    from translator.inference.export import export

    run = run_with_decode(trained_run, tmp_path / "beam_run", strategy="beam", beam_size=2)
    result = export(load_config("export", [f"run_dir={run}"]))
    assert (result["decode"]["strategy"], result["decode"]["beam_size"]) == ("beam", 2)
    assert (run / "export" / "saved_model.pb").exists()


def test_batches_decoded_side_by_side_give_the_same_translations_in_order(trained_run, sentences):
    source = sentences[0][:23]
    run_dir = trained_run[0].run_dir
    one, two = (
        Translator.from_run_dir(run_dir, decode("decode=greedy", "decode.batch_size=4",
                                                f"decode.parallel_batches={n}"))
        for n in (1, 2)
    )  # fmt: skip
    finished = []
    side_by_side = two.translate_detailed(source, progress=finished.append)
    assert [t.source for t in side_by_side] == [s.strip() for s in source]
    assert [t.text for t in side_by_side] == one.translate(source)
    assert sum(finished) == len(source) and len(finished) == 6  # progress after each batch
