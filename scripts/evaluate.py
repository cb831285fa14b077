"""Score a run with sacreBLEU: `python scripts/evaluate.py [run_dir=checkpoints/RUN]`."""

from omegaconf import DictConfig

from translator.cli import command, run


@command("evaluate")
def main(cfg: DictConfig) -> dict:
    from translator.evaluation.evaluate import evaluate

    return run(evaluate, cfg)


if __name__ == "__main__":
    main()
