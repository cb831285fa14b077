"""`make serve`: check the run, then serve it with uvicorn while the model loads."""

from __future__ import annotations

import logging

import uvicorn
from omegaconf import DictConfig

from translator.config import validate_serve
from translator.inference import engines
from translator.inference.translator import Translator
from translator.run_dir import locate
from translator.serving.app import create_app

log = logging.getLogger(__name__)


def serve(cfg: DictConfig) -> None:
    """Serve the run `cfg.run_dir` names (or the latest) on `cfg.host`:`cfg.port` until
    interrupted. A bad limit, or a missing or incomplete run, is refused before the server
    starts."""
    validate_serve(cfg)
    run = locate(cfg.run_dir, cfg.paths.checkpoints)
    run.check_complete()

    def load_translator() -> Translator:
        return engines.load_translator(run, cfg.decode, cfg.weights, cfg.engine)

    app = create_app(cfg, load_translator)
    print(f"serving {run} on http://{cfg.host}:{cfg.port}/ (the page), POST /translate, "
          "GET /health, GET /metrics; Ctrl-C stops", flush=True)  # fmt: skip
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)
