"""Train a Transformer: `make train` or `python scripts/train.py experiment=multi30k_en_de`."""

import hydra
from omegaconf import DictConfig

from translator.cli import run
from translator.config import CONFIG_DIR


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from translator.training.trainer import train

    return run(train, cfg)


if __name__ == "__main__":
    main()
