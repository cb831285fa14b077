"""Attention figures for one sentence: `python scripts/plot_attention.py text=... [run_dir=RUN]`."""

import hydra
from omegaconf import DictConfig

from translator.cli import run
from translator.config import CONFIG_DIR


@hydra.main(config_path=str(CONFIG_DIR), config_name="plot", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from translator.visualization.plot import plot

    return run(plot, cfg)


if __name__ == "__main__":
    main()
