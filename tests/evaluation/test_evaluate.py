import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from translator.config import PROJECT_ROOT, load_config
from translator.errors import CorpusError
from translator.evaluation.evaluate import evaluate

pytestmark = pytest.mark.slow


def test_evaluate_writes_a_complete_report(trained_run, capsys):
    cfg, _ = trained_run
    # The run memorised the 64 training pairs (its config keeps data.max_pairs=64).
    report = evaluate(load_config("evaluate", [f"run_dir={cfg.run_dir}", "split=train"]))
    assert report["dataset"] == "multi30k_de_en-train" and report["sentences"] == 64
    metrics = {"bleu", "bleu_lowercase", "chrf", "ter"}
    assert set(report["scores"]) == set(report["signatures"]) == metrics
    assert report["scores"]["bleu"] > 80 and report["scores"]["chrf"] > 90  # see trained_run
    assert report["scores"]["ter"] < 15  # edits per reference word: lower is better
    assert report["decode"]["strategy"] == "greedy"  # the run's own decode settings
    assert report["sentences_per_second"] > 0 and report["run_dir"] == str(cfg.run_dir)
    assert report["weights"] == "best"  # auto: the run wrote no averaged weights
    saved = json.loads(
        (Path(cfg.run_dir) / "eval" / "multi30k_de_en-train.best.greedy.json").read_text()
    )
    assert saved["scores"] == report["scores"]
    hypotheses = Path(report["hypotheses"]).read_text(encoding="utf-8").split("\n")
    assert len(hypotheses) == 65 and hypotheses[-1] == ""
    printed = capsys.readouterr().out
    assert "BLEU (lowercased)" in printed and "chrF" in printed
    assert report["length_limited"] <= 3  # memorised pairs end (a tiny model may loop on one)
    cut = ["decode.max_length_a=0", "decode.max_length_b=3"]
    report = evaluate(load_config("evaluate", [f"run_dir={cfg.run_dir}", "split=train", *cut]))
    assert report["length_limited"] == 64
    assert capsys.readouterr().err.count("reached its length limit") == 64


def test_evaluate_with_a_file_pair_and_bad_pairs(trained_run, tmp_path):
    cfg, _ = trained_run
    (tmp_path / "src.de").write_text("Ein Hund.\nZwei Katzen.\n", encoding="utf-8")
    (tmp_path / "ref.en").write_text("A dog.\nTwo cats.\n", encoding="utf-8")
    report = evaluate(load_config("evaluate", [
        f"run_dir={cfg.run_dir}", f"source={tmp_path / 'src.de'}",
        f"reference={tmp_path / 'ref.en'}", "decode=greedy",
    ]))  # fmt: skip
    assert report["dataset"] == "src" and report["sentences"] == 2
    (tmp_path / "ref.en").write_text("A dog.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="has 2 lines but .*ref.en has 1"):
        evaluate(load_config("evaluate", [
            f"run_dir={cfg.run_dir}", f"source={tmp_path / 'src.de'}",
            f"reference={tmp_path / 'ref.en'}",
        ]))  # fmt: skip


def test_evaluate_reports_confidence_intervals_and_says_when_it_replaces_a_report(
    trained_run, capsys, caplog
):
    cfg, _ = trained_run
    overrides = [f"run_dir={cfg.run_dir}", "split=train"]
    first = evaluate(load_config("evaluate", overrides))
    printed = " ".join(capsys.readouterr().out.split())
    for key in ("bleu", "bleu_lowercase", "chrf", "ter"):  # 64 sentences: half-widths to ~10
        half_width = first["confidence_95"][key]
        assert half_width is not None and 0 < half_width < 25
        assert f"{first['scores'][key]:.2f} ± {half_width:.2f}" in printed
    with caplog.at_level("WARNING", logger="translator.evaluation.evaluate"):
        again = evaluate(load_config("evaluate", overrides))
    assert again["scores"] == first["scores"]
    assert "replacing the earlier report" in caplog.text


def test_evaluate_compares_with_a_hypotheses_file_and_with_another_run(
    trained_run, tmp_path, capsys
):
    cfg, _ = trained_run
    overrides = [f"run_dir={cfg.run_dir}", "split=train"]
    references = load_config("evaluate", overrides)  # the 64 memorised training pairs
    report = evaluate(references)
    hypotheses = Path(report["hypotheses"]).read_text(encoding="utf-8").splitlines()
    worse = tmp_path / "worse.en"
    worse.write_text("\n".join(" ".join(h.split()[:3]) for h in hypotheses) + "\n")
    compared = evaluate(load_config("evaluate", [*overrides, f"compare={worse}"]))["compared_with"]
    assert compared["baseline"] == str(worse)
    assert compared["bleu"]["system"] == report["scores"]["bleu"]
    assert compared["bleu"]["difference"] > 20 and compared["bleu"]["p_value"] < 0.05
    assert compared["ter"]["difference"] < -20 and compared["ter"]["p_value"] < 0.05
    printed = capsys.readouterr().out
    assert "paired bootstrap test against" in printed and "significant at 0.05" in printed

    # Another run without reports of its own (a copy of this one): translated now, identical.
    other = tmp_path / "other"
    shutil.copytree(cfg.run_dir, other, ignore=shutil.ignore_patterns("eval"))
    compared = evaluate(load_config("evaluate", [*overrides, f"compare={other}"]))["compared_with"]
    assert compared["baseline"] == "other (multi30k_de_en-train.best.greedy)"
    assert all(compared[key]["difference"] == 0 for key in ("bleu", "chrf", "ter"))

    worse.write_text("just one line\n")
    with pytest.raises(CorpusError, match="compare=.*worse.en: 1 hypotheses for 64 sentences"):
        evaluate(load_config("evaluate", [*overrides, f"compare={worse}"]))
    with pytest.raises(CorpusError, match="compare=/nowhere: no such run directory"):
        evaluate(load_config("evaluate", [*overrides, "compare=/nowhere"]))


def test_a_byte_order_mark_starts_no_sentence(trained_run, tmp_path, capsys):
    from translator.data import load_corpus
    from translator.inference.translator import Translator

    cfg, _ = trained_run
    sentence = max(load_corpus(cfg.data, "train").source[:8], key=len)  # a memorised one
    translation = Translator.from_run_dir(cfg.run_dir).translate([sentence])[0]
    assert len(translation.split()) >= 4  # BLEU's 4-grams exist: identical text scores 100
    source, reference = tmp_path / "src.de", tmp_path / "ref.en"
    source.write_text(f"\ufeff{sentence}\n", encoding="utf-8")  # as Notepad saves "UTF-8"
    reference.write_text(f"\ufeff{translation}\n", encoding="utf-8")
    report = evaluate(load_config("evaluate", [
        f"run_dir={cfg.run_dir}", f"source={source}", f"reference={reference}",
    ]))  # fmt: skip
    assert report["sentences"] == 1
    assert report["scores"]["bleu"] == 100.0 and report["scores"]["chrf"] == 100.0
    hypotheses = Path(report["hypotheses"]).read_text(encoding="utf-8")
    assert hypotheses == f"{translation}\n"  # the source was translated without the mark
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [
        f"note: {path}: skipped the UTF-8 byte-order mark at its start"
        for path in (source, reference)
    ]


@pytest.mark.parametrize("empty", ["", "\n", "\n  \n\n"], ids=["no lines", "one empty", "blank"])
def test_an_empty_evaluation_set_is_one_error_naming_the_file(trained_run, tmp_path, empty):
    cfg, _ = trained_run
    source, reference = tmp_path / "src.de", tmp_path / "ref.en"
    source.write_text(empty, encoding="utf-8")
    reference.write_text(empty, encoding="utf-8")
    overrides = [f"run_dir={cfg.run_dir}", f"source={source}", f"reference={reference}"]
    with pytest.raises(CorpusError, match=f"^{re.escape(str(source))}: nothing to evaluate"):
        evaluate(load_config("evaluate", overrides))
    lines = empty.count("\n")
    source.write_text("Ein Hund.\n" * lines or "Ein Hund.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=f"^{re.escape(str(reference))}: nothing to evaluate"):
        evaluate(load_config("evaluate", overrides))


def test_evaluate_script_on_empty_files_is_one_error_line_and_exit_2(trained_run, tmp_path):
    cfg, _ = trained_run
    source, reference = tmp_path / "src.de", tmp_path / "ref.en"
    source.write_text("")
    reference.write_text("")
    done = subprocess.run(
        [sys.executable, PROJECT_ROOT / "scripts" / "evaluate.py", f"run_dir={cfg.run_dir}",
         f"source={source}", f"reference={reference}"],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {source}: nothing to evaluate (no lines, or only empty ones)"
    )
    assert "Traceback" not in done.stderr
