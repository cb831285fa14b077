"""Prepare training data (vocabularies, shards of token ids): `make prepare` or
`python scripts/prepare.py experiment=multi30k_en_de`."""

from omegaconf import DictConfig

from translator.cli import command, run


@command("prepare")
def main(cfg: DictConfig) -> dict:
    from translator.data.prepare import prepare_command

    return run(prepare_command, cfg)


if __name__ == "__main__":
    main()
