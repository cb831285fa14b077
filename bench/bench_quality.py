"""Time to quality: each experiment trained at each time budget on this machine, then scored.

    make bench-quality
    make bench-quality ARGS="quality_minutes=[20] quality_experiments=[multi30k_en_de]"

Every run is the project's own commands (`scripts/train.py experiment=E train.max_minutes=M`,
then `scripts/evaluate.py` with the decode the experiment names), in a new folder under
`quality_dir`; their logs go beside them. Prints one JSON object: the machine, and per run the
epochs, steps, target tokens/s, validation loss, test BLEU (cased, with its 95% interval, and
lowercased) and chrF. Not part of `make test`: the default list trains for 140 minutes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import hydra
from omegaconf import DictConfig

from translator.config import CONFIG_DIR, PROJECT_ROOT
from translator.run_dir import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_translate import check_output, emit, machine  # noqa: E402

SCRIPTS = PROJECT_ROOT / "scripts"


def run_command(args: list[str], log_file: Path) -> float:
    """Run a project script, its output appended to `log_file`; the wall seconds it took."""
    start = time.perf_counter()
    with open(log_file, "a", encoding="utf-8") as log:
        done = subprocess.run([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(
            f"error: {' '.join(args[:2])} failed (exit {done.returncode}); see {log_file}"
        )
    return time.perf_counter() - start


def train_and_score(experiment: str, minutes: float, cfg: DictConfig, run_dir: Path) -> dict:
    log_file = run_dir.with_suffix(".log")
    overrides = [f"experiment={experiment}", f"train.max_minutes={minutes}", f"run_dir={run_dir}"]
    wall = run_command([str(SCRIPTS / "train.py"), *overrides, *cfg.quality_overrides], log_file)
    run_command([str(SCRIPTS / "evaluate.py"), f"run_dir={run_dir}", f"split={cfg.split}"],
                log_file)  # fmt: skip
    return summarize(experiment, minutes, run_dir, wall)


def summarize(experiment: str, minutes: float, run_dir: Path, wall: float) -> dict:
    run = RunDir(run_dir)
    metrics = json.loads(run.metrics_file.read_text())
    history = run.history()  # tolerant: a line a crash cut short is skipped
    report = json.loads(max(run.eval_dir.glob("*.json"), key=lambda p: p.stat().st_mtime)
                        .read_text())  # fmt: skip
    speeds = [h["tokens_per_second"] for h in history]
    return {
        "experiment": experiment,
        "budget_minutes": minutes,
        "wall_minutes": round(wall / 60, 1),
        "epochs": len(history),
        "steps": metrics["optimizer_steps"],
        "precision": metrics.get("precision"),
        "target_tokens_per_second": round(statistics.median(speeds)),
        "val_loss": round(min(h["val_loss"] for h in history), 3),
        "weights": report["weights"],
        "decode": report["decode"]["strategy"],
        "test_bleu": report["scores"]["bleu"],
        "test_bleu_ci95": report["confidence_95"]["bleu"],
        "test_bleu_lowercase": report["scores"]["bleu_lowercase"],
        "test_chrf": report["scores"]["chrf"],
        "run_dir": str(run_dir),
    }


def bench_quality(cfg: DictConfig) -> dict:
    root = Path(cfg.quality_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    plan = [(e, m) for m in cfg.quality_minutes for e in cfg.quality_experiments]
    runs = []
    for number, (experiment, minutes) in enumerate(plan, start=1):
        run_dir = root / f"{experiment}-{minutes:g}min-{stamp}"
        print(
            f"[{number}/{len(plan)}] {experiment}, {minutes:g} minutes: {run_dir}", file=sys.stderr
        )
        runs.append(train_and_score(experiment, minutes, cfg, run_dir))
        print(f"  {json.dumps(runs[-1])}", file=sys.stderr)
    return {"machine": machine(), "split": cfg.split, "runs": runs}


@hydra.main(config_path=str(CONFIG_DIR), config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check_output(cfg.output)
    emit(bench_quality(cfg), cfg.output)


if __name__ == "__main__":
    main()
