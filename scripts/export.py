"""Export a run as a SavedModel: `python scripts/export.py [run_dir=checkpoints/RUN]`."""

from omegaconf import DictConfig

from translator.cli import command, run


@command("export")
def main(cfg: DictConfig) -> dict:
    from translator.inference.export import export

    return run(export, cfg)


if __name__ == "__main__":
    main()
