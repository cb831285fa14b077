"""Every benchmark in one report: training throughput, then decoding throughput of a trained run.

    make bench RUN=checkpoints/multi30k_en_de-small

Prints one JSON object {"train": ..., "translate": ...} (each names the machine); `output=FILE`
also saves it (never over an existing file).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import bench_train  # noqa: E402
from bench_translate import bench_translate, check_output, emit  # noqa: E402

from translator.config import CONFIG_DIR  # noqa: E402
from translator.run_dir import locate  # noqa: E402


@hydra.main(config_path=str(CONFIG_DIR), config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check_output(cfg.output)
    # Find the run before the long training benchmark, so a missing one fails at once.
    cfg.run_dir = str(locate(cfg.run_dir, cfg.paths.checkpoints))
    emit({"train": bench_train(cfg), "translate": bench_translate(cfg)}, cfg.output)


if __name__ == "__main__":
    main()
