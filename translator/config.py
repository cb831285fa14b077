"""Hydra configuration helpers.

The configs live in `configs/` at the project root. `${project_root:}` resolves to that root, so
paths such as `${paths.root}/../shared/data` work whatever the working directory.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "configs"

if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))


def load_config(config_name: str = "train", overrides: list[str] | None = None) -> DictConfig:
    """Compose a config from `configs/` the way the scripts do (inside a Hydra app too)."""
    if GlobalHydra.instance().is_initialized():  # e.g. called from a @hydra.main script
        return compose(config_name=config_name, overrides=list(overrides or []))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides or []))


def save_resolved(cfg: DictConfig, path: Path) -> None:
    """Write the fully resolved config (what a run directory keeps for inference)."""
    Path(path).write_text(OmegaConf.to_yaml(cfg, resolve=True))
