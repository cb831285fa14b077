"""Choose the decoder a command asks for with `engine=`: TensorFlow (`Translator`) or CTranslate2
(`CTranslate2Translator`). Both translate with the same interface and decode settings."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from translator.config import EngineConfig
from translator.errors import TranslatorError
from translator.inference.translator import Translator
from translator.run_dir import RunDir, locate


def load_translator(
    run: str | Path | RunDir | list,
    decode: DictConfig | None = None,
    weights: str = "auto",
    engine: DictConfig | None = None,
):
    """A run's translator on `engine` (default: TensorFlow); several runs: their ensemble
    (TensorFlow only)."""
    if engine is not None:
        check_engine(engine)
    runs = run if isinstance(run, list) else [run]
    if engine is None or engine.name == "tensorflow":
        return Translator.from_runs(runs, decode, weights)
    if len(runs) > 1:
        raise TranslatorError("an ensemble (several run_dir) needs engine=tensorflow")
    run = runs[0]
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
    latest finished run under `paths.checkpoints`; a list: the ensemble of those runs),
    `weights`, `decode` and `engine`."""
    runs = run_dirs(cfg.run_dir, cfg.paths.checkpoints)
    return load_translator(runs, cfg.decode, cfg.weights, cfg.get("engine"))


def run_dirs(value, checkpoints) -> list[RunDir]:
    """The runs `run_dir=` names: one, or a list (`run_dir=[a,b]`) for an ensemble."""
    if isinstance(value, ListConfig | list | tuple):
        if not value:
            raise TranslatorError("run_dir=[]: name at least one run")
        return [locate(str(one), checkpoints) for one in value]
    return [locate(value, checkpoints)]


def engine_name(engine: DictConfig | None) -> str:
    """A short label: `tensorflow`, or `ct2-<compute type>`."""
    if engine is None or engine.name == "tensorflow":
        return "tensorflow"
    return f"ct2-{engine.compute_type}"
