"""Learning-rate schedules: the Transformer's inverse square root and linear decay to a zero point
the time budget may move."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from omegaconf import OmegaConf

from translator.training.schedules import LinearDecaySchedule, TransformerSchedule, build_schedule


@pytest.mark.parametrize("step_factor", [None, 1, 4])
def test_schedule_matches_formula(step_factor):
    d_model, warmup = 128, 4000
    schedule = TransformerSchedule(d_model, warmup)
    step = 1 if step_factor is None else step_factor * warmup
    expected = d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)


def test_schedule_peaks_at_warmup_and_first_update_learns():
    schedule = TransformerSchedule(128, 100, scale=2.0)
    values = [float(schedule(s)) for s in range(0, 400)]
    assert values[0] == values[1] > 0
    assert int(np.argmax(values)) == 100
    assert values[100] == pytest.approx(2.0 * 128**-0.5 * 100**-0.5, rel=1e-6)


def test_schedule_serialises():
    schedule = TransformerSchedule(256, 1234, 0.5)
    clone = TransformerSchedule.from_config(schedule.get_config())
    assert float(clone(777)) == float(schedule(777))
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    restored = keras.optimizers.Adam.from_config(optimizer.get_config())
    assert float(restored.learning_rate) == pytest.approx(float(schedule(0)))


def test_linear_decay_warms_up_then_falls_to_zero_at_total_steps():
    schedule = LinearDecaySchedule(0.01, warmup_steps=10, total_steps=30)
    values = [float(schedule(s)) for s in (0, 1, 5, 10, 20, 25, 30, 45)]
    expected = [0.001, 0.001, 0.005, 0.01, 0.005, 0.0025, 0.0, 0.0]
    assert values == pytest.approx(expected, rel=1e-6, abs=1e-12)
    clone = LinearDecaySchedule.from_config(schedule.get_config())
    assert float(clone(17)) == pytest.approx(0.01 * 13 / 20, rel=1e-6)


def test_build_schedule_peaks_alike():
    train = OmegaConf.create({"warmup_steps": 100, "lr_scale": 2.0, "decay": "inverse_sqrt"})
    inverse = build_schedule(128, train)
    assert isinstance(inverse, TransformerSchedule)
    linear = build_schedule(128, OmegaConf.merge(train, {"decay": "linear", "decay_steps": 1000}))
    assert isinstance(linear, LinearDecaySchedule)
    assert float(linear(100)) == pytest.approx(float(inverse(100)), rel=1e-6)
    assert float(linear(550)) == pytest.approx(float(inverse(100)) / 2, rel=1e-6)


def test_moving_the_zero_point_changes_the_rate_inside_a_compiled_step():
    schedule = LinearDecaySchedule(0.01, warmup_steps=10, total_steps=30)
    rate = tf.function(lambda step: schedule(step))
    assert float(rate(20)) == pytest.approx(0.005, rel=1e-6)
    assert schedule.set_total_steps(50) == 50 and schedule.total_steps == 50
    assert float(rate(20)) == pytest.approx(0.01 * 30 / 40, rel=1e-6)  # same trace, new end
    assert schedule.set_total_steps(4) == 11  # kept past the warmup
    assert float(rate(11)) == 0.0
    assert LinearDecaySchedule.from_config(schedule.get_config()).total_steps == 11


def test_auto_decay_steps_start_at_the_most_steps():
    train = OmegaConf.create({"warmup_steps": 100, "lr_scale": 2.0, "decay": "linear",
                              "decay_steps": "auto", "max_minutes": 30})  # fmt: skip
    assert build_schedule(128, train, max_steps=5000).total_steps == 5000
    assert build_schedule(128, train).total_steps == 101  # no estimate yet: the budget moves it
