"""Every entry of every config group composes into the real configs."""

import pytest
from omegaconf import OmegaConf

from tests.conftest import compose
from translator.config import CONFIG_DIR
from translator.training.trainer import check_settings

GROUPS = ["data", "tokenizer", "model", "train", "decode", "experiment", "paths", "hydra"]
ENTRIES = [
    (group, path.stem)
    for group in GROUPS
    for path in sorted((CONFIG_DIR / group).glob("*.yaml"))
    if not path.stem.startswith("_")
]
NEEDS_VALUES = {("data", "tfds"), ("data", "parallel_text")}  # `???` fields the user supplies


def test_every_group_has_entries():
    assert {group for group, _ in ENTRIES} == set(GROUPS)


@pytest.mark.parametrize("group,entry", ENTRIES)
def test_entry_composes(group, entry):
    cfg = compose(f"{group}={entry}")
    if (group, entry) in NEEDS_VALUES:
        assert OmegaConf.is_missing(cfg.data, "source")
        return
    # Everything else resolves completely (hydra's own node aside).
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved["run_dir"].endswith(resolved["run_name"])
    check_settings(cfg)  # the trainer would accept it (schedule, shared embeddings)


def test_parallel_text_with_values_resolves(tmp_path):
    cfg = compose("data=parallel_text", f"data.path={tmp_path}", "data.source=xx", "data.target=yy")
    data = OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=True)
    assert (data["path"], data["source"], data["target"]) == (str(tmp_path), "xx", "yy")


def test_multi30k_folder_defaults_to_shared_data_and_can_be_overridden(tmp_path):
    cfg = compose("data=multi30k_en_de")
    assert cfg.data.path.endswith("shared/data/multi30k")
    assert compose("data=multi30k_en_de", f"data.path={tmp_path}").data.path == str(tmp_path)


@pytest.mark.parametrize("config_name", ["translate", "evaluate", "plot", "export"])
def test_inference_configs_compose(config_name):
    from translator.config import load_config

    cfg = load_config(config_name, ["run_dir=/nowhere"])
    assert cfg.run_dir == "/nowhere" and cfg.weights == "auto"
    assert cfg.decode.strategy in ("greedy", "beam")
