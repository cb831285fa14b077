"""`backtranslate`: monolingual text -> an aligned corpus folder that data configs read."""

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from translator.config import PROJECT_ROOT, load_config
from translator.data.sources import SYNTHETIC_MARK, PairReader
from translator.errors import TranslatorError
from translator.inference.backtranslate import backtranslate

LINES = ["Ein Mann läuft.", "", "Zwei Hunde spielen im Schnee.", "   ", "Eine Frau liest."]


def command(run_dir, source, output, *overrides):
    return load_config("backtranslate", [f"run_dir={run_dir}", f"input={source}",
                                         f"output={output}", *overrides])  # fmt: skip


def written(folder):
    return {name: (folder / name).read_text(encoding="utf-8").split("\n")[:-1]
            for name in ("train.de", "train.en")}  # fmt: skip


def test_backtranslate_writes_aligned_files_with_empty_lines_kept(trained_run, tmp_path):
    cfg, _ = trained_run
    source = tmp_path / "mono.de"
    source.write_text("\n".join(LINES * 3) + "\n", encoding="utf-8")
    result = backtranslate(command(cfg.run_dir, source, tmp_path / "bt"))
    files = written(tmp_path / "bt")
    assert result["lines"] == 15
    assert len(files["train.de"]) == len(files["train.en"]) == 15
    assert files["train.de"] == [line.strip() for line in LINES * 3]  # the real side, as read
    empty = [i for i, line in enumerate(files["train.de"]) if not line]
    assert [i for i, line in enumerate(files["train.en"]) if not line] == empty
    mark = json.loads((tmp_path / "bt" / SYNTHETIC_MARK).read_text())
    assert mark["direction"] == "de->en" and mark["lines"] == 15
    assert mark["decode"]["sampling_topk"] == 10 and mark["decode"]["sampling_seed"] == 1
    # The same seed repeats the draws: a second folder is identical.
    backtranslate(command(cfg.run_dir, source, tmp_path / "again"))
    assert written(tmp_path / "again") == files


def test_samples_writes_each_line_that_many_times_with_its_own_draws(trained_run, tmp_path):
    cfg, _ = trained_run
    source = tmp_path / "mono.de"
    source.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    overrides = ("samples=3", "decode.sampling_topk=0", "decode.sampling_temperature=3.0")
    result = backtranslate(command(cfg.run_dir, source, tmp_path / "bt", *overrides))
    files = written(tmp_path / "bt")
    assert result["lines"] == 15
    assert files["train.de"] == [line.strip() for line in LINES for _ in range(3)]
    draws = [files["train.en"][3 * i : 3 * i + 3] for i in range(len(LINES))]
    assert draws[1] == draws[3] == ["", "", ""]  # empty lines stay empty in every copy
    # Hot, unrestricted sampling from a model that memorised its targets still varies.
    assert any(len(set(three)) > 1 for three in draws), draws
    assert json.loads((tmp_path / "bt" / SYNTHETIC_MARK).read_text())["samples"] == 3
    backtranslate(command(cfg.run_dir, source, tmp_path / "again", *overrides))
    assert written(tmp_path / "again") == files  # seeded: the same draws again


@pytest.mark.parametrize(("overrides", "message"), [
    (("samples=0",), "samples=0: expected a whole number >= 1"),
    (("samples=2", "decode=beam"), "samples=2 needs a sampling decode"),
    (("samples=2", "decode=greedy"), "samples=2 needs a sampling decode"),
])  # fmt: skip
def test_samples_is_refused_where_it_cannot_draw(trained_run, tmp_path, overrides, message):
    cfg, _ = trained_run
    source = tmp_path / "mono.de"
    source.write_text("Ein Hund.\n", encoding="utf-8")
    with pytest.raises(TranslatorError, match=message):
        backtranslate(command(cfg.run_dir, source, tmp_path / "bt", *overrides))
    assert not (tmp_path / "bt").exists()


def test_the_folder_reads_as_a_corpus_with_its_sources_tagged(trained_run, tmp_path):
    cfg, _ = trained_run
    source = tmp_path / "mono.de"
    source.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    backtranslate(command(cfg.run_dir, source, tmp_path / "bt"))
    # An en->de corpus: the synthetic English is its source; empty pairs are skipped.
    data = OmegaConf.merge(cfg.data, {"path": str(tmp_path / "bt"), "source": "en",
                                      "target": "de", "max_pairs": None})  # fmt: skip
    plain = [pair for chunk in PairReader(data).chunks() for pair in zip(*chunk, strict=True)]
    data.tag_synthetic = "<BT>"
    tagged = [pair for chunk in PairReader(data).chunks() for pair in zip(*chunk, strict=True)]
    assert [t for _, t in plain] == ["Ein Mann läuft.", "Zwei Hunde spielen im Schnee.",
                                     "Eine Frau liest."]  # fmt: skip
    assert [s for s, _ in tagged] == [f"<BT> {s}" for s, _ in plain]
    (tmp_path / "bt" / SYNTHETIC_MARK).unlink()  # a real corpus is never tagged
    assert [pair for chunk in PairReader(data).chunks() for pair in zip(*chunk, strict=True)] \
        == plain  # fmt: skip


def test_a_non_empty_output_is_refused_and_kept(trained_run, tmp_path):
    cfg, _ = trained_run
    source = tmp_path / "mono.de"
    source.write_text("Ein Hund.\n", encoding="utf-8")
    (tmp_path / "bt").mkdir()
    (tmp_path / "bt" / "keep.txt").write_text("mine")
    with pytest.raises(TranslatorError, match="is not empty; pass overwrite=true"):
        backtranslate(command(cfg.run_dir, source, tmp_path / "bt"))
    assert (tmp_path / "bt" / "keep.txt").read_text() == "mine"
    backtranslate(command(cfg.run_dir, source, tmp_path / "bt", "overwrite=true"))
    assert sorted(p.name for p in (tmp_path / "bt").iterdir()) == [SYNTHETIC_MARK, "train.de",
                                                                   "train.en"]  # fmt: skip


def test_the_command_line_reports_a_missing_input_in_one_line(trained_run, tmp_path):
    cfg, _ = trained_run
    done = subprocess.run(
        [sys.executable, "scripts/backtranslate.py", f"run_dir={cfg.run_dir}",
         f"input={tmp_path}/missing.txt", f"output={tmp_path}/bt"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: {tmp_path}/missing.txt: file not found"
    assert not (tmp_path / "bt").exists()
