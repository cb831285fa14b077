"""`make serve`: check the run, then serve it with uvicorn while the model loads."""

from __future__ import annotations

import logging
import resource

import uvicorn
from omegaconf import DictConfig

from translator.config import validate_serve
from translator.errors import TranslatorError
from translator.inference import engines
from translator.inference.translator import Translator
from translator.run_dir import locate
from translator.serving.app import create_app
from translator.serving.guard import DeadlineH11Protocol

log = logging.getLogger(__name__)

FILES_OF_OUR_OWN = 256  # model files, TensorFlow's threads and libraries, logs


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
    ensure_file_descriptors(cfg.max_connections)
    protocol = type("Protocol", (DeadlineH11Protocol,), {"read_timeout_s": cfg.read_timeout_s})
    print(f"serving {run} on http://{cfg.host}:{cfg.port}/ (the page), POST /translate, "
          "GET /health, GET /metrics; Ctrl-C stops", flush=True)  # fmt: skip
    limits = {"limit_concurrency": cfg.max_connections, "timeout_keep_alive": cfg.keep_alive_s}
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level, http=protocol, **limits)


def ensure_file_descriptors(connections: int) -> None:
    """Room for `connections` open sockets and the files the server itself needs: the soft
    limit is raised as far as the hard one allows, else the setting is refused."""
    needed = connections + FILES_OF_OUR_OWN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        most = hard - FILES_OF_OUR_OWN
        raise TranslatorError(f"max_connections={connections}: this process may open only "
                              f"{hard} files (ulimit -Hn); use at most {most}")  # fmt: skip
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
