"""Streamed, sharded training data at 115 k, 1 M and 4 M pairs: `make bench-data`.

The corpora are generated from the shipped Tatoeba es-en corpus (this machine cannot download a
large one): its training split repeated k times and shuffled (seeded), and a WMT-like variant
whose lines each join three random pairs. For each: `scripts/prepare.py` (wall time, peak RSS);
`scripts/train.py` once prepared (seconds from start to the first training step, to the first
epoch line, peak RSS, the model's tokens/s); the input pipeline alone (tokens/s it delivers).
At the smallest size, training tokens/s streamed from shards against today's in-memory pipeline
(same model, alternating, in this process). Then two workers (`scripts/train_workers.py`) on
one corpus: each worker's peak RSS and its share of the shards.

    make bench-data
    make bench-data ARGS="data_sizes=[1,9] data_joined=[]"

Prints one JSON object.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hydra  # noqa: E402
import psutil  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from translator.config import CONFIG_DIR, PROJECT_ROOT, load_config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_translate import check_output, emit, machine  # noqa: E402

SHIPPED = PROJECT_ROOT / "data" / "tatoeba_es_en"
SCRIPTS = PROJECT_ROOT / "scripts"

# train.py, plus a line `BENCH {...}` with the seconds from BENCH_START to the first and last
# training step.
TRAIN_DRIVER = textwrap.dedent(
    """
    import json, os, sys, time
    import translator.cli
    import keras
    from translator.training import trainer

    start = float(os.environ["BENCH_START"])

    class Clock(keras.callbacks.Callback):
        first = None
        def on_train_batch_end(self, batch, logs=None):
            now = time.time() - start
            Clock.first = Clock.first or now
            Clock.last = now
        def on_epoch_end(self, epoch, logs=None):
            print("BENCH " + json.dumps({"first_step": Clock.first, "epoch_end": Clock.last}),
                  file=sys.stderr, flush=True)

    make_callbacks = trainer.make_callbacks
    trainer.make_callbacks = lambda *args: [Clock(), *make_callbacks(*args)]
    sys.argv = ["train.py", *sys.argv[1:]]
    sys.path.insert(0, {scripts!r})
    import train
    train.main()
    """
)


def read_pairs(split: str) -> tuple[list[str], list[str]]:
    def lines(lang):
        with gzip.open(SHIPPED / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
            return f.read().splitlines()

    return lines("es"), lines("en")


def generate(folder: Path, times: int, joined: bool) -> int:
    """The shipped training split `times` over (shuffled), or with three random pairs joined
    per line; validation and test as shipped. Returns the training lines."""
    source, target = read_pairs("train")
    count = len(source) * times
    if (folder / "train.en").exists():
        return count
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(times)
    order = [i % len(source) for i in range(count)]
    rng.shuffle(order)
    with open(folder / ".train.es", "w") as f, open(folder / ".train.en", "w") as g:
        for n in range(0, count):
            rows = [order[n]] if not joined else [order[n], *rng.sample(range(len(source)), 2)]
            f.write(" ".join(source[r] for r in rows) + "\n")
            g.write(" ".join(target[r] for r in rows) + "\n")
    for split in ("validation", "test"):
        for lang, lines in zip(("es", "en"), read_pairs(split), strict=True):
            (folder / f"{split}.{lang}").write_text("\n".join(lines) + "\n")
    (folder / ".train.es").rename(folder / "train.es")
    (folder / ".train.en").rename(folder / "train.en")
    return count


class PeakMemory:
    """The peak resident memory of a process and its descendants, each on its own (MB),
    sampled from the kernel's high-water mark (VmHWM) while it runs."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peaks: dict[int, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while not self.done.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                processes = []
            for process in processes:
                try:
                    with open(f"/proc/{process.pid}/status") as f:
                        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
                    self.peaks[process.pid] = max(self.peaks.get(process.pid, 0), hwm / 1024)
                except (OSError, StopIteration, psutil.Error):
                    pass
            time.sleep(0.2)

    def stop(self) -> dict[int, float]:
        self.done.set()
        self.thread.join()
        return self.peaks


def timed(command: list[str], **env) -> dict:
    """Run a command: its wall seconds, exit code, output and peak RSS (MB) by process."""
    start = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "BENCH_START": str(start),
                                               "PYTHONPATH": str(PROJECT_ROOT), **env})  # fmt: skip
    memory = PeakMemory(process.pid)
    stdout, stderr = process.communicate()
    peaks = memory.stop()
    if process.returncode:
        raise RuntimeError(f"{' '.join(map(str, command))} failed: {stderr[-3000:]}")
    return {"seconds": time.time() - start, "stdout": stdout, "stderr": stderr,
            "peaks": peaks, "root_pid": process.pid}  # fmt: skip


def overrides_for(bench: DictConfig, folder: Path, run_dir: Path | None = None) -> list[str]:
    extra = [f"data.path={folder}", f"paths.prepared={Path(bench.data_dir) / 'prepared'}",
             "train.max_minutes=600", "train.epochs=1",
             f"train.steps_per_epoch={bench.data_train_steps}", "train.verbose=0",
             "train.tensorboard=false", "train.average_last=0"]  # fmt: skip
    return [*extra, *([f"run_dir={run_dir}"] if run_dir else []), *bench.data_overrides]


def bench_prepare(bench: DictConfig, folder: Path) -> dict:
    result = timed([sys.executable, SCRIPTS / "prepare.py", *overrides_for(bench, folder)])
    summary = json.loads(result["stdout"][result["stdout"].index("{") :])["preparations"][0]
    return {"seconds": round(result["seconds"], 1), "peak_rss_mb": round(max(
        result["peaks"].values()), 1), "pairs": summary["pairs"], "folder": summary["folder"],
        "shards": summary["shards"]}  # fmt: skip


def bench_training(bench: DictConfig, folder: Path, name: str) -> dict:
    run_dir = Path(bench.data_dir) / "runs" / f"{name}-{time.time_ns()}"
    driver = Path(bench.data_dir) / "train_driver.py"
    driver.write_text(TRAIN_DRIVER.replace("{scripts!r}", repr(str(SCRIPTS))))
    result = timed([sys.executable, driver, *overrides_for(bench, folder, run_dir)])
    [clock] = [json.loads(line[6:]) for line in result["stderr"].splitlines()
               if line.startswith("BENCH ")]  # fmt: skip
    history = [json.loads(line) for line in open(run_dir / "history.jsonl")]
    return {
        "first_step_seconds": round(clock["first_step"], 1),
        "first_epoch_line_seconds": round(clock["epoch_end"], 1),
        "wall_seconds": round(result["seconds"], 1),
        "peak_rss_mb": round(max(result["peaks"].values()), 1),
        "model_tokens_per_second": round(history[-1]["tokens_per_second"]),
    }


def pipeline_tokens_per_second(bench: DictConfig, folder: Path) -> float:
    """Target tokens/s the training stream delivers alone (no model), after a warm-up."""
    from translator.data import load_corpus
    from translator.data.prepare import prepare
    from translator.training.batches import run_batches

    cfg = load_config("train", overrides_for(bench, folder))
    training = prepare(cfg)
    batches = run_batches(cfg, training, load_corpus(cfg.data, "validation"))
    iterator = iter(batches.stream())
    for _ in range(20):
        next(iterator)
    tokens, start = 0, time.perf_counter()
    for _ in range(bench.data_pipeline_batches):
        _, target = next(iterator)
        tokens += int((target.numpy() != 0).sum())
    return tokens / (time.perf_counter() - start)


def streamed_against_in_memory(bench: DictConfig, folder: Path) -> dict:
    """Training tokens/s of one model fed from the shards and from today's in-memory pipeline
    (tokenized pairs cached in RAM), alternating, two rounds each."""
    import numpy as np

    from translator.data import load_corpus, make_batches
    from translator.data.prepare import prepare
    from translator.training.batches import run_batches
    from translator.training.feed import StreamFeed
    from translator.training.trainer import build_model

    cfg = load_config("train", overrides_for(bench, folder))
    training = prepare(cfg)
    batches = run_batches(cfg, training, load_corpus(cfg.data, "validation"))
    corpus = load_corpus(cfg.data, "train")
    in_memory = make_batches(corpus, training.tokenizers, cfg.data, training=True,
                             seed=cfg.seed, endless=True)  # fmt: skip
    model = build_model(cfg, training.tokenizers, next(iter(batches.validation)))
    feeds = {"streamed": iter(StreamFeed(batches.stream()).dataset()),
             "in_memory": iter(in_memory)}  # fmt: skip
    steps = bench.data_train_steps
    rates = {name: [] for name in feeds}
    for feed in feeds.values():  # warm-up: tracing, the in-memory cache's first pass
        for _ in range(10):
            model.train_on_batch(*next(feed))
    for _ in range(2):
        for name, feed in feeds.items():
            tokens, start = 0, time.perf_counter()
            for _ in range(steps):
                inputs, target = next(feed)
                model.train_on_batch(inputs, target)
                tokens += int(np.sum(target.numpy() != 0))
            rates[name].append(tokens / (time.perf_counter() - start))
    best = {name: max(values) for name, values in rates.items()}
    return {
        "tokens_per_second": {k: [round(v) for v in vs] for k, vs in rates.items()},
        "streamed_over_in_memory": round(best["streamed"] / best["in_memory"], 3),
    }


def bench_workers(bench: DictConfig, folder: Path, single_rss: float) -> dict:
    from translator.data.shards import Prepared

    run_dir = Path(bench.data_dir) / "runs" / f"workers-{time.time_ns()}"
    command = [sys.executable, SCRIPTS / "train_workers.py", f"workers={bench.data_workers}",
               *overrides_for(bench, folder, run_dir)]  # fmt: skip
    result = timed(command)
    launcher = result["root_pid"]
    workers = sorted(pid for pid in result["peaks"] if pid != launcher)
    peaks = sorted((result["peaks"][pid] for pid in workers), reverse=True)[: bench.data_workers]
    record = json.loads((run_dir / "data.json").read_text())["preparations"][0]
    prepared = Prepared.load(record["folder"])
    shares = []
    for index in range(bench.data_workers):
        files = {os.path.basename(f) for f in prepared.shard_files(index, bench.data_workers)}
        pairs = sum(s["pairs"] for s in prepared.index["shards"] if s["file"] in files)
        shares.append({"shards": len(files), "pairs": pairs})
    return {
        "workers": bench.data_workers,
        "worker_peak_rss_mb": [round(p, 1) for p in peaks],
        "one_process_peak_rss_mb": single_rss,
        "worker_over_one_process": round(max(peaks) / single_rss, 3),
        "shares": shares,
        "wall_seconds": round(result["seconds"], 1),
    }


def bench_data(bench: DictConfig) -> dict:
    root = Path(bench.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    corpora = [(f"tatoeba_x{k}", k, False) for k in bench.data_sizes]
    corpora += [(f"tatoeba_x{k}_joined3", k, True) for k in bench.data_joined]
    report = {"machine": machine(), "corpora": {}}
    for name, times, joined in corpora:
        folder = root / name
        start = time.perf_counter()
        lines = generate(folder, times, joined)
        entry = {"lines": lines, "generate_seconds": round(time.perf_counter() - start, 1)}
        entry["prepare"] = bench_prepare(bench, folder)
        entry["train"] = bench_training(bench, folder, name)
        pipeline = pipeline_tokens_per_second(bench, folder)
        entry["pipeline_tokens_per_second"] = round(pipeline)
        entry["pipeline_over_model"] = round(
            pipeline / entry["train"]["model_tokens_per_second"], 2
        )
        report["corpora"][name] = entry
        print(json.dumps({name: entry}), file=sys.stderr, flush=True)
    smallest = f"tatoeba_x{min(bench.data_sizes)}"
    report["streamed_against_in_memory"] = streamed_against_in_memory(bench, root / smallest)
    sizes = [report["corpora"][f"tatoeba_x{k}"]["train"]["peak_rss_mb"] for k in bench.data_sizes]
    report["training_rss_largest_over_smallest"] = round(max(sizes[-1:]) / sizes[0], 3)
    if bench.data_workers > 1:
        name = f"tatoeba_x{bench.data_workers_size}"
        single = report["corpora"][name]["train"]["peak_rss_mb"]
        report["workers"] = bench_workers(bench, root / name, single)
    return report


@hydra.main(config_path=str(CONFIG_DIR), config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check_output(cfg.output)
    emit(bench_data(cfg), cfg.output)


if __name__ == "__main__":
    main()
