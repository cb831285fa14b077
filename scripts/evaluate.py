"""Score a run with sacreBLEU: `python scripts/evaluate.py [run_dir=checkpoints/RUN]`."""

import hydra
from omegaconf import DictConfig

from translator.cli import run
from translator.config import CONFIG_DIR


@hydra.main(config_path=str(CONFIG_DIR), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from translator.evaluation.evaluate import evaluate

    return run(evaluate, cfg)


if __name__ == "__main__":
    main()
