"""Translation throughput: our TensorFlow decoder (cached greedy and beam 4, batched; and the
TensorFlow tutorial's way, no cache and batch 1) side by side with CTranslate2 float32 and int8 on
the same weights and sentences.

    make bench-translate RUN=checkpoints/multi30k_en_de

Prints one JSON object: per mode sentences/s and output tokens/s, each mode's sentences/s as a
multiple of CTranslate2 float32 with the same search, and the same table for randomly initialised
models of other sizes (`random_sizes`) whose outputs are held to `random_length` tokens.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from translator.config import CONFIG_DIR, load_config
from translator.run_dir import RunDir, locate

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TF, CT2_F32, CT2_INT8 = (
    ["engine=tensorflow"],
    ["engine=ctranslate2", "engine.compute_type=float32"],
    ["engine=ctranslate2", "engine.compute_type=int8"],
)
GREEDY, BEAM4 = ["decode=greedy"], ["decode=beam", "decode.beam_size=4"]
MODES = {
    "tf_greedy": TF + GREEDY,
    "tf_beam4": TF + BEAM4,
    "tf_uncached_batch1": TF
    + GREEDY
    + ["decode.use_cache=false", "decode.batch_size=1", "decode.parallel_batches=1"],
    "ct2_float32_greedy": CT2_F32 + GREEDY,
    "ct2_float32_beam4": CT2_F32 + BEAM4,
    "ct2_int8_greedy": CT2_INT8 + GREEDY,
    "ct2_int8_beam4": CT2_INT8 + BEAM4,
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
        "ctranslate2": _ctranslate2_version(),
    }


def _ctranslate2_version() -> str | None:
    try:
        import ctranslate2
    except ImportError:
        return None
    return ctranslate2.__version__


def measure(run: RunDir, mode: str, sources: list[str], extra: list[str], repeats: int) -> dict:
    """One mode's throughput: the fastest of `repeats` passes over `sources`, after a warm-up
    batch (the fastest, because other processes only ever slow a pass down)."""
    from translator.inference.engines import load_translator

    cfg = load_config("translate", extra + MODES[mode])  # the mode's own settings win
    translator = load_translator(run, cfg.decode, "auto", cfg.engine)
    translator.translate(sources[: translator.decode.batch_size])  # trace or warm up first
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = translator.translate(sources)
        passes.append(time.perf_counter() - start)
    seconds = min(passes)
    tokens = int(translator.tokenizers.target.tokenize(outputs).row_lengths().numpy().sum())
    tokens += len(outputs)  # END
    return {
        "sentences": len(sources),
        "seconds": round(seconds, 2),
        "sentences_per_second_each_pass": [round(len(sources) / t, 2) for t in passes],
        "sentences_per_second": round(len(sources) / seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1),
        "tokens_per_sentence": round(tokens / len(sources), 1),
        "decode": OmegaConf.to_container(translator.decode),
    }


def table(run: RunDir, cfg: DictConfig, sources: list[str], extra: list[str]) -> dict:
    """Every mode of `cfg.modes` on `sources`, with the ratios to CTranslate2 float32."""
    results = {}
    for mode in cfg.modes:
        subset = sources[: cfg.uncached_limit] if "uncached" in mode else sources
        results[mode] = measure(run, mode, subset, extra, cfg.repeats)
    report = {"modes": results}
    for mode, anchor in (("greedy", "ct2_float32_greedy"), ("beam4", "ct2_float32_beam4")):
        if anchor in results:
            base = results[anchor]["sentences_per_second"]
            report.setdefault("sentences_per_second_vs_ct2_float32", {}).update(
                {
                    m: round(r["sentences_per_second"] / base, 2)
                    for m, r in results.items()
                    if m.endswith(mode) or (mode == "greedy" and "uncached" in m)
                }  # fmt: skip
            )
    if "tf_uncached_batch1" in results:
        base = results["tf_uncached_batch1"]["tokens_per_second"]
        report["tokens_per_second_vs_tf_uncached_batch1"] = {
            m: round(r["tokens_per_second"] / base, 1)
            for m, r in results.items()
            if m != "tf_uncached_batch1"
        }
    return report


def random_run(run: RunDir, size: str, folder: Path) -> RunDir:
    """A run directory beside `run`'s tokenizer and data, with a randomly initialised model of
    the `model=<size>` preset: for timing the decoders at sizes nobody trained here."""
    import numpy as np

    from translator.model.transformer import Transformer

    cfg = run.load_config()
    cfg.model = load_config("train", [f"model={size}"]).model
    settings = run.load_model_settings()
    model = Transformer.from_settings(
        cfg.model, settings["source_vocab_size"], settings["target_vocab_size"]
    )
    dummy = np.full((1, 2), 2, np.int32)
    model((dummy, dummy))
    other = RunDir(folder)
    shutil.copytree(run.tokenizer_dir, other.tokenizer_dir)
    other.save_config(cfg)
    other.save_model_settings(model.get_config())
    model.save_weights(other.weights_file("best"))
    return other


def bench_translate(cfg: DictConfig) -> dict:
    from translator.data import load_corpus

    run = locate(cfg.run_dir, cfg.paths.checkpoints)
    run_cfg = run.load_config()
    corpus = load_corpus(run_cfg.data, cfg.split)
    sources = corpus.source[: cfg.limit] if cfg.limit else corpus.source
    report = {
        "benchmark": "translate",
        "run_dir": str(run),
        "dataset": f"{run_cfg.data.name}:{cfg.split}",
        "machine": machine(),
        "trained": table(run, cfg, sources, list(cfg.decode_overrides)),
    }
    held = [
        *cfg.decode_overrides,
        "decode.max_length_a=0",
        f"decode.max_length_b={cfg.random_length}",
    ]
    for size in cfg.random_sizes:
        with tempfile.TemporaryDirectory() as folder:
            other = random_run(run, size, Path(folder) / "run")
            report[f"random_{size}"] = table(other, cfg, sources, held)
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
