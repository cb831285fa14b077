"""Score translations with the latest finished run, or the one `run_dir=` names: one
log-probability (log P(target | source) under the model) per line pair.

python scripts/score.py source=src.txt target=hyp.txt
python scripts/score.py run_dir=checkpoints/RUN source=src.txt target=hyp.txt format=json
"""

from omegaconf import DictConfig

from translator.cli import command, run


@command("score")
def main(cfg: DictConfig) -> dict:
    from translator.inference.score_command import score

    return run(score, cfg)


if __name__ == "__main__":
    main()
