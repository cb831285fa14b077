"""Attention figures for one sentence: `python scripts/plot_attention.py text=... [run_dir=RUN]`."""

from omegaconf import DictConfig

from translator.cli import command, run


@command("plot")
def main(cfg: DictConfig) -> dict:
    from translator.visualization.plot import plot

    return run(plot, cfg)


if __name__ == "__main__":
    main()
