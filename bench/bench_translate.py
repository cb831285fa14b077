"""Translation throughput: cached greedy and beam-4 batched decoding against a no-cache batch-1
mode that mimics the TensorFlow tutorial (re-running the decoder over the whole prefix per token).

    make bench-translate RUN=checkpoints/multi30k_en_de-tutorial

Prints one JSON object: sentences/s and output tokens/s per mode, and the speed-up ratios.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from translator.config import CONFIG_DIR, load_config
from translator.run_dir import RunDir, locate

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODES = {
    "greedy": ["decode=greedy"],
    "beam4": ["decode=beam", "decode.beam_size=4"],
    "uncached_batch1": ["decode=greedy", "decode.use_cache=false", "decode.batch_size=1"],
}


def machine() -> dict:
    import tensorflow as tf

    from translator.runtime import cpu_features

    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        **cpu_features(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "tensorflow": tf.__version__,
    }


def measure(run: RunDir, mode: str, sources: list[str]) -> dict:
    from translator.inference.translator import Translator

    decode = load_config("translate", MODES[mode]).decode
    translator = Translator.from_run_dir(run, decode)
    translator.translate(sources[: decode.batch_size])  # trace the graph outside the timing
    start = time.perf_counter()
    outputs = translator.translate(sources)
    seconds = time.perf_counter() - start
    tokens = int(translator.tokenizers.target.tokenize(outputs).row_lengths().numpy().sum())
    tokens += len(outputs)  # END
    return {
        "sentences": len(sources),
        "seconds": round(seconds, 2),
        "sentences_per_second": round(len(sources) / seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1),
        "decode": OmegaConf.to_container(decode),
    }


def bench_translate(cfg: DictConfig) -> dict:
    from translator.data import load_corpus

    run = locate(cfg.run_dir, cfg.paths.checkpoints)
    run_cfg = run.load_config()
    corpus = load_corpus(run_cfg.data, cfg.split)
    sources = corpus.source[: cfg.limit] if cfg.limit else corpus.source
    results = {}
    for mode in cfg.modes:
        subset = sources[: cfg.uncached_limit] if mode == "uncached_batch1" else sources
        results[mode] = measure(run, mode, subset)
    report = {
        "benchmark": "translate",
        "run_dir": str(run),
        "dataset": f"{run_cfg.data.name}:{cfg.split}",
        "machine": machine(),
        "modes": results,
    }
    if "uncached_batch1" in results:
        base = results["uncached_batch1"]["tokens_per_second"]
        report["speedup_tokens_per_second_vs_uncached_batch1"] = {
            mode: round(r["tokens_per_second"] / base, 1)
            for mode, r in results.items()
            if mode != "uncached_batch1"
        }
    return report


def check_output(output: str | None) -> None:
    """Refuse an `output=` file that already exists, before any timing starts."""
    if output and Path(output).exists():
        raise SystemExit(f"error: {output} already exists; pick another output=...")


def emit(report: dict, output: str | None) -> None:
    """Print the report as JSON (and save it to `output` when given)."""
    text = json.dumps(report, indent=2)
    print(text)
    if output:
        Path(output).write_text(text)


@hydra.main(config_path=str(CONFIG_DIR), config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check_output(cfg.output)
    emit(bench_translate(cfg), cfg.output)


if __name__ == "__main__":
    main()
