"""Training throughput of the `tutorial` model on Multi30k, with and without length bucketing and
XLA (and optionally in mixed precision), against the machine's measured matmul peak.

    make bench-train
    make bench-train ARGS="train_precision=[float32,mixed_bfloat16] train_xla=[false]"

Prints one JSON object. Tokens are non-padding target tokens; FLOP/s is estimated as
6 x parameters x tokens/s (forward + backward) and compared with an n x n matmul in the compute
dtype of the setting (float32, or bfloat16 / float16 for the mixed policies).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hydra  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from translator.config import CONFIG_DIR, load_config  # noqa: E402
from translator.data import load_corpus, make_batches  # noqa: E402
from translator.runtime import PRECISIONS, set_precision  # noqa: E402
from translator.tokenizer import PAD_ID, train_tokenizers  # noqa: E402
from translator.training.trainer import build_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_translate import check_output, emit, machine  # noqa: E402


def matmul_peak(n: int, dtype: str = "float32", repeats: int = 10) -> float:
    """FLOP/s of an n x n matmul in `dtype` (best of `repeats`)."""
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def pad_to_multiple(batch, multiple: int):
    """Pad a batch's sequence axes with PAD_ID up to a multiple of `multiple` (fewer XLA shapes)."""
    (source, target_in), target_out = batch

    def pad(ids):
        extra = -ids.shape[1] % multiple
        return tf.pad(ids, [[0, 0], [0, extra]], constant_values=PAD_ID)

    return (pad(source), pad(target_in)), pad(target_out)


def shape_key(batch) -> tuple:
    (source, target_in), _ = batch
    return tuple(source.shape), tuple(target_in.shape)


def run_setting(
    cfg: DictConfig, bench: DictConfig, corpus, tokenizers, bucket: bool, xla: bool, precision: str
):
    overrides = {"bucket": bucket}
    if xla:  # XLA compiles one program per shape: coarse buckets, each padded to its upper length
        overrides |= {"pad_to_bucket": True, "bucket_width": bench.xla_pad_multiple}
    data = OmegaConf.merge(cfg.data, overrides)
    dataset = make_batches(corpus, tokenizers, data, training=True, seed=0).repeat()
    train_cfg = OmegaConf.merge(cfg, {"train": {"jit_compile": xla}})
    iterator = iter(dataset)
    set_precision(precision)
    model = build_model(train_cfg, tokenizers, next(iterator))
    steps = bench.warmup_steps + bench.timed_steps
    batches = [next(iterator) for _ in range(steps)]
    if xla and not bucket:
        batches = [pad_to_multiple(b, bench.xla_pad_multiple) for b in batches]
    timed = batches[bench.warmup_steps :]
    # Warm up on the first steps and on one batch of every shape the timed steps will see, so
    # tracing and XLA compilation stay out of the timed loop; their time is reported apart.
    warmup = batches[: bench.warmup_steps] + list({shape_key(b): b for b in timed}.values())
    start = time.perf_counter()
    for x, y in warmup:
        model.train_on_batch(x, y)
    warmup_seconds = time.perf_counter() - start
    tokens = sum(int(np.sum(y.numpy() != PAD_ID)) for _, y in timed)
    padded = sum(int(np.prod(y.shape)) for _, y in timed)
    start = time.perf_counter()
    for x, y in timed:
        loss = model.train_on_batch(x, y)
    seconds = time.perf_counter() - start
    tokens_per_second = tokens / seconds
    return {
        "precision": precision,
        "bucketing": bucket,
        "xla": xla,
        "steps_per_second": round(bench.timed_steps / seconds, 3),
        "target_tokens_per_second": round(tokens_per_second, 1),
        "target_padding_fraction": round(1 - tokens / padded, 3),
        "estimated_flops_per_second": 6 * model.count_params() * tokens_per_second,
        "batch_shapes": len({shape_key(b) for b in timed}),
        "warmup_seconds": round(warmup_seconds, 1),
        "final_loss": float(np.asarray(loss if np.ndim(loss) == 0 else loss[0])),
    }, model.count_params()


def check_precisions(precisions) -> None:
    """Refuse an unknown precision policy before any data is read."""
    for precision in precisions:
        if precision not in PRECISIONS:
            raise SystemExit(
                f"error: train_precision: {precision!r} is not one of {', '.join(PRECISIONS)}"
            )


def compute_dtype(precision: str) -> str:
    return keras.mixed_precision.Policy(precision).compute_dtype


def bench_train(bench: DictConfig) -> dict:
    check_precisions(bench.train_precision)
    # The tutorial preset as it is: the experiment's model settings (shared embeddings) stay out.
    cfg = load_config("train", [f"experiment={bench.train_experiment}", "model=tutorial",
                                "model.share_embeddings=false",
                                f"data.batch_tokens={bench.batch_tokens}",
                                f"data.max_pairs={bench.train_pairs}"])  # fmt: skip
    corpus = load_corpus(cfg.data, "train")
    tokenizers = train_tokenizers(corpus.source, corpus.target, cfg.tokenizer)
    # Unbucketed batches hold as many sentences as bucketed ones do on average.
    bucketed = make_batches(corpus, tokenizers, cfg.data, training=False)
    batches = int(bucketed.reduce(0, lambda n, _: n + 1))
    cfg.data.batch_size = max(1, round(len(corpus) / batches))

    # float32 always (the headline peak), and the compute dtype of every mixed policy timed
    dtypes = dict.fromkeys(["float32"] + [compute_dtype(p) for p in bench.train_precision])
    peaks = {dtype: matmul_peak(bench.matmul_size, dtype) for dtype in dtypes}
    settings, parameters = [], 0
    for precision in bench.train_precision:
        peak = peaks[compute_dtype(precision)]
        for bucket in (True, False):
            for xla in bench.train_xla:
                result, parameters = run_setting(
                    cfg, bench, corpus, tokenizers, bucket, xla, precision
                )
                result["fraction_of_matmul_peak"] = round(
                    result["estimated_flops_per_second"] / peak, 4
                )
                result["estimated_flops_per_second"] = round(
                    result["estimated_flops_per_second"] / 1e9, 2
                )
                settings.append(result)
    set_precision("float32")
    return {
        "benchmark": "train",
        "model": "tutorial",
        "parameters": parameters,
        "dataset": f"{cfg.data.name}:train ({len(corpus)} pairs)",
        "batch": {
            "bucketed_tokens": bench.batch_tokens,
            "unbucketed_sentences": cfg.data.batch_size,
        },
        "timed_steps": bench.timed_steps,
        "matmul_peak_gflops": round(peaks["float32"] / 1e9, 1),
        **{
            f"matmul_peak_gflops_{d}": round(p / 1e9, 1) for d, p in peaks.items() if d != "float32"
        },
        "flops_unit": "GFLOP/s",
        "settings": settings,
        "machine": machine(),
    }


@hydra.main(config_path=str(CONFIG_DIR), config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check_output(cfg.output)
    emit(bench_train(cfg), cfg.output)


if __name__ == "__main__":
    main()
