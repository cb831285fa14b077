"""Train a Transformer: `make train` or `python scripts/train.py experiment=multi30k_en_de`."""

from omegaconf import DictConfig

from translator.cli import command, run


@command("train")
def main(cfg: DictConfig) -> dict:
    from translator.training.trainer import train

    return run(train, cfg)


if __name__ == "__main__":
    main()
