"""Serve a run over HTTP: `python scripts/serve.py [run_dir=checkpoints/RUN] [port=8000]`.

curl -s localhost:8000/translate -d '{"text": "Hace frío."}'
"""

from omegaconf import DictConfig

from translator.cli import command, run


@command("serve")
def main(cfg: DictConfig) -> None:
    from translator.serving.server import serve

    return run(serve, cfg)


if __name__ == "__main__":
    main()
