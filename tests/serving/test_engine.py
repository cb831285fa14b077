"""A request's decode settings: merged with the run's, checked, and kept for the next request."""

from types import SimpleNamespace

import omegaconf
import pytest
from omegaconf import OmegaConf

from translator.serving.engine import Engine

RUN_DECODE = {"strategy": "beam", "beam_size": 5, "length_penalty": 0.6, "n_best": 1,
              "max_length_a": 1.5, "max_length_b": 10, "batch_size": 32,
              "parallel_batches": 1, "use_cache": True}  # fmt: skip


@pytest.fixture
def engine():
    translator = SimpleNamespace(decode=OmegaConf.create(RUN_DECODE), has_attention=True)
    return Engine(translator)


def test_the_same_overrides_give_the_same_read_only_settings(engine):
    first = engine.settings({"n_best": 3, "length_penalty": 1.0})
    again = engine.settings({"length_penalty": 1.0, "n_best": 3})
    assert again is first
    assert (first.strategy, first.beam_size, first.n_best, first.length_penalty) == (
        "beam",
        5,
        3,
        1.0,
    )
    with pytest.raises(omegaconf.errors.ReadonlyConfigError):
        first.beam_size = 8
    assert engine.settings({}) is engine.settings({})
    assert engine.settings({})["beam_size"] == 5


def test_a_beam_of_one_is_greedy_and_a_refused_setting_is_refused_every_time(engine):
    greedy = engine.settings({"beam_size": 1, "length_penalty": 2.0})
    assert (greedy.strategy, greedy.beam_size, greedy.length_penalty) == ("greedy", 1, 0.6)
    for _ in range(2):  # an error is not kept as if it were settings
        with pytest.raises(ValueError, match="n_best"):
            engine.settings({"beam_size": 2, "n_best": 3})
