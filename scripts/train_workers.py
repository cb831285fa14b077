"""Train on N worker processes on this machine: `make train-workers N=2 [EXP=...]`."""

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from translator.cli import command, run


@command("train_workers")
def main(cfg: DictConfig) -> int:
    from translator.training.workers import train_on_workers

    hydra = HydraConfig.get()
    return run(train_on_workers, cfg, list(hydra.overrides.task), hydra.runtime.output_dir)


if __name__ == "__main__":
    raise SystemExit(main())
