"""Translate sentences with the latest finished run, or the one `run_dir=` names.

python scripts/translate.py text="'Tengo hambre.'"
python scripts/translate.py run_dir=checkpoints/RUN input=src.txt output=hyp.txt decode=greedy
echo "Hace frío." | python scripts/translate.py
"""

from omegaconf import DictConfig

from translator.cli import command, run


@command("translate")
def main(cfg: DictConfig) -> dict:
    from translator.inference.commands import translate

    return run(translate, cfg)


if __name__ == "__main__":
    main()
