"""Back-translate monolingual text into a parallel corpus folder with a reverse-direction run.

python scripts/backtranslate.py run_dir=checkpoints/lowres_en_de input=mono.en output=data/bt
"""

from omegaconf import DictConfig

from translator.cli import command, run


@command("backtranslate")
def main(cfg: DictConfig) -> dict:
    from translator.inference.backtranslate import backtranslate

    return run(backtranslate, cfg)


if __name__ == "__main__":
    main()
