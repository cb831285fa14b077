"""Choose the decoder a command asks for with `engine=`: TensorFlow (`Translator`) or CTranslate2
(`CTranslate2Translator`). Both translate with the same interface and decode settings."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from translator.config import EngineConfig
from translator.errors import TranslatorError
from translator.inference.translator import Translator
from translator.run_dir import RunDir, locate


def load_translator(
    run: str | Path | RunDir,
    decode: DictConfig | None = None,
    weights: str = "auto",
    engine: DictConfig | None = None,
):
    """A run's translator on `engine` (default: TensorFlow)."""
    if engine is not None:
        check_engine(engine)
    if engine is None or engine.name == "tensorflow":
        return Translator.from_run_dir(run, decode, weights)
    from translator.inference.ct2_translator import CTranslate2Translator

    return CTranslate2Translator.from_run_dir(run, decode, weights, engine)


def check_engine(engine: DictConfig) -> None:
    """The schema's checks (translator/config.py) on an `engine` config: a TranslatorError
    names the bad key."""
    try:
        EngineConfig(**OmegaConf.to_container(engine))
    except (TypeError, ValueError) as error:
        raise TranslatorError(str(error)) from None


def from_command(cfg: DictConfig):
    """The translator an inference command's config asks for: its `run_dir` (when null, the
    latest finished run under `paths.checkpoints`), `weights`, `decode` and `engine`."""
    run = locate(cfg.run_dir, cfg.paths.checkpoints)
    return load_translator(run, cfg.decode, cfg.weights, cfg.get("engine"))


def engine_name(engine: DictConfig | None) -> str:
    """A short label: `tensorflow`, or `ct2-<compute type>`."""
    if engine is None or engine.name == "tensorflow":
        return "tensorflow"
    return f"ct2-{engine.compute_type}"
