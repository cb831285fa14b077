"""Export a run as a SavedModel: `python scripts/export.py [run_dir=checkpoints/RUN]`."""

import hydra
from omegaconf import DictConfig

from translator.cli import run
from translator.config import CONFIG_DIR


@hydra.main(config_path=str(CONFIG_DIR), config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from translator.inference.export import export

    return run(export, cfg)


if __name__ == "__main__":
    main()
