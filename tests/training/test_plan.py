"""The run's plan: warm-up, BiT stage end, decay end and averaging window following its length."""

import tensorflow as tf
from omegaconf import OmegaConf

from translator.training.plan import NEVER, PIPELINE_LEAD, StepPlan
from translator.training.schedules import LinearDecaySchedule


def plan_settings(**settings):
    """A `cfg` with the train and data keys a StepPlan reads, linear decay to `auto`."""
    train = {"epochs": 100, "decay_steps": "auto", "warmup_fraction": None, "warmup_steps": 4,
             "warmup_min_steps": 1, "average_fraction": None, "average_last": 0}  # fmt: skip
    data = {"bidirectional_fraction": 0.0, "concat_from": 0.0, "concat_until": 1.0}
    for key, value in settings.items():
        (data if key == "bidirectional_fraction" else train)[key] = value
    return OmegaConf.create({"train": train, "data": data})


def test_a_warmup_that_is_over_and_a_stage_end_the_pipeline_may_have_passed_stay():
    schedule = LinearDecaySchedule(0.01, warmup_steps=100, total_steps=10_000)
    end = tf.Variable(NEVER, dtype=tf.int64)
    cfg = plan_settings(warmup_fraction=0.1, warmup_steps=100, bidirectional_fraction=0.5)
    plan = StepPlan(cfg, steps_per_epoch=100, schedule=schedule, bidirectional_end=end)
    assert plan.update(20, step=0) == {
        "predicted_steps": 2000,
        "decay_steps": 2000,
        "warmup_steps": 100,
        "bidirectional_steps": 1000,
    }
    assert plan.update(8, step=50)["warmup_steps"] == 80  # not over yet: follows
    assert plan.update(4, step=120)["warmup_steps"] == 80  # over: stays
    assert plan.update(4, step=120)["bidirectional_steps"] == 200  # far enough ahead: follows
    assert plan.update(2, step=150)["bidirectional_steps"] == 200  # 50 steps ahead: stays
    assert int(end.numpy()) == 200
    assert plan.state() == {"predicted_epochs": 2, "bidirectional_steps": 200,
                            "warmup_steps": 80}  # fmt: skip
    end.assign(1000)  # far ahead, but the run turns out shorter: it ends as soon as it safely can
    assert plan.update(3, step=140)["bidirectional_steps"] == 140 + PIPELINE_LEAD


def test_the_concatenation_start_follows_the_prediction_and_is_saved_and_restored():
    start = tf.Variable(NEVER, dtype=tf.int64)
    cfg = plan_settings()
    cfg.data.concat_from = 0.5
    plan = StepPlan(cfg, steps_per_epoch=100, concat_start=start)
    assert plan.follows_length
    assert plan.update(20, step=0)["concat_steps"] == 1000
    assert plan.update(10, step=100)["concat_steps"] == 500  # far ahead: follows
    assert plan.update(4, step=480)["concat_steps"] == 500  # 20 steps ahead: stays
    assert plan.state() == {"predicted_epochs": 4, "concat_steps": 500}
    resumed_start = tf.Variable(NEVER, dtype=tf.int64)
    StepPlan(cfg, steps_per_epoch=100, concat_start=resumed_start).restore(plan.state())
    assert int(resumed_start.numpy()) == 500


def test_the_concatenation_end_follows_the_prediction_with_its_start():
    start, end = tf.Variable(NEVER, dtype=tf.int64), tf.Variable(NEVER, dtype=tf.int64)
    cfg = plan_settings()
    cfg.data.concat_from, cfg.data.concat_until = 0.25, 0.75
    plan = StepPlan(cfg, steps_per_epoch=100, concat_start=start, concat_end=end)
    assert plan.update(20, step=0) == {"predicted_steps": 2000, "concat_steps": 500,
                                       "concat_end_steps": 1500}  # fmt: skip
    # The start is passed and stays; the end is far ahead and follows.
    assert plan.update(10, step=600) == {"predicted_steps": 1000, "concat_steps": 500,
                                         "concat_end_steps": 750}  # fmt: skip
    assert plan.state() == {"predicted_epochs": 10, "concat_steps": 500, "concat_end_steps": 750}
    resumed_end = tf.Variable(NEVER, dtype=tf.int64)
    StepPlan(cfg, steps_per_epoch=100, concat_end=resumed_end).restore(plan.state())
    assert int(resumed_end.numpy()) == 750
