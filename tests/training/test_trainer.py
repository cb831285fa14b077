"""End-to-end training on real Multi30k pairs with a tiny model."""

import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import TINY_BASE, tiny_run
from tests.training.test_plan import plan_settings
from translator.config import PROJECT_ROOT
from translator.data import load_corpus, make_batches
from translator.data.pipeline import batch_sizes, batches_per_pass
from translator.errors import TranslatorError
from translator.inference.translator import Translator, load_run
from translator.model.transformer import Transformer
from translator.run_dir import RunDir
from translator.tokenizer import PAD_ID, TokenizerPair
from translator.training.plan import StepPlan
from translator.training.schedules import LinearDecaySchedule
from translator.training.trainer import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def overfit_run(trained_run):
    return trained_run


def test_tiny_model_overfits_64_pairs_and_greedy_reproduces_targets(overfit_run):
    cfg, metrics = overfit_run
    assert metrics["loss"] < 0.1  # started near ln(vocab) ~ 6.9
    assert metrics["optimizer_steps"] == 800
    corpus = load_corpus(cfg.data, "train")
    outputs = Translator.from_run_dir(cfg.run_dir).translate(corpus.source)
    exact = sum(out == ref for out, ref in zip(outputs, corpus.target, strict=True))
    assert exact >= 56, f"only {exact}/64 training targets reproduced"


def test_run_dir_holds_everything_inference_needs(overfit_run):
    cfg, _ = overfit_run
    names = set(os.listdir(cfg.run_dir))
    expected = {"config.yaml", "model.json", "tokenizer", "last.weights.h5", "best.weights.h5"}
    assert expected <= names and "metrics.json" in names
    assert "backup" not in names  # BackupAndRestore removes its state after a finished run
    assert ".lock" not in names  # released
    history = [json.loads(line) for line in open(os.path.join(cfg.run_dir, "history.jsonl"))]
    assert [h["epoch"] for h in history] == list(range(1, 17))
    assert history[-1]["loss"] < history[0]["loss"] / 10


def test_model_get_config_round_trip(overfit_run):
    cfg, _ = overfit_run
    settings = json.load(open(os.path.join(cfg.run_dir, "model.json")))
    model = Transformer.from_config(settings)
    assert model.get_config() == settings
    assert (model.d_model, model.num_layers, model.num_heads) == (64, 2, 4)


def test_finished_run_is_not_overwritten(overfit_run):
    cfg, _ = overfit_run
    before = os.path.getmtime(os.path.join(cfg.run_dir, "last.weights.h5"))
    with pytest.raises(TranslatorError, match="already holds a finished run"):
        train(cfg)
    assert os.path.getmtime(os.path.join(cfg.run_dir, "last.weights.h5")) == before


KILL_AFTER_FIRST_EPOCH = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    from translator.training import trainer

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            os.kill(os.getpid(), signal.SIGKILL)  # after the backup of epoch 1 was written

    make_callbacks = trainer.make_callbacks
    trainer.make_callbacks = lambda *args: make_callbacks(*args) + [Kill()]
    sys.argv = ["train.py", *sys.argv[1:]]
    sys.path.insert(0, {scripts!r})
    import train
    train.main()
    """
)


def test_killed_run_resumes_at_epoch_two_with_optimizer_state(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [
        *TINY_BASE, "model=tiny", "data.max_pairs=64", "tokenizer.vocab_size=1000",
        "train.epochs=3", "train.steps_per_epoch=10", "train.tensorboard=false",
        f"run_dir={run_dir}",
    ]  # fmt: skip
    driver = tmp_path / "killed_train.py"
    driver.write_text(KILL_AFTER_FIRST_EPOCH.format(scripts=str(PROJECT_ROOT / "scripts")))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    killed = subprocess.run([sys.executable, driver, *overrides], env=env, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert (run_dir / "backup").is_dir() and not (run_dir / "metrics.json").exists()
    assert (run_dir / ".lock").exists()  # the killed command's, its flock gone with it

    def train_again(*changes):
        return subprocess.run([sys.executable, PROJECT_ROOT / "scripts" / "train.py",
                               *overrides, *changes], env=env, capture_output=True,
                              text=True)  # fmt: skip

    # Another vocabulary would mix with the run's tokenizers: one error line, nothing written.
    changed = train_again("tokenizer.vocab_size=2000")
    assert changed.returncode == 2, changed.stderr[-2000:]
    assert f"warning: {run_dir / '.lock'}: taking over the lock left by pid " in changed.stderr
    [error] = [line for line in changed.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: {run_dir}: this run was started with "
                            "tokenizer.vocab_size=1000; this command has 2000 (")  # fmt: skip
    assert "vocab_size: 1000" in (run_dir / "config.yaml").read_text()

    # A budget accepted as a change: the run resumes with it, and config.yaml records it.
    resumed = train_again("train.max_minutes=60", "train.allow_changes=[train.max_minutes]")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "with train.max_minutes=60.0 (was null)" in resumed.stderr
    assert "max_minutes: 60.0" in (run_dir / "config.yaml").read_text()
    assert not (run_dir / ".lock").exists()
    epochs = [json.loads(line)["epoch"] for line in open(run_dir / "history.jsonl")]
    assert epochs == [1, 2, 3]  # epoch 1 from the killed run; the restart began at epoch 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_this_session"] == 2
    # 10 steps restored with the optimizer + 20 run now; a fresh optimizer would count 20.
    assert metrics["optimizer_steps"] == 30


def test_training_runs_under_mixed_bfloat16(tmp_path):
    import keras

    cfg = tiny_run(tmp_path / "run", "train.precision=mixed_bfloat16", "train.epochs=2",
                   "train.steps_per_epoch=15")  # fmt: skip
    metrics = train(cfg)
    assert keras.mixed_precision.global_policy().compute_dtype == "bfloat16"
    history = [json.loads(line) for line in open(tmp_path / "run" / "history.jsonl")]
    assert np.isfinite(metrics["loss"]) and history[1]["loss"] < history[0]["loss"]


def test_training_runs_under_mirrored_strategy_on_two_cpus(tmp_path):
    cfg = tiny_run(tmp_path / "run", "train.distribution=mirrored", "train.devices=[/cpu:0,/cpu:1]",
                   "data.batch_tokens=256",
                   "train.epochs=2", "train.steps_per_epoch=15")  # fmt: skip
    metrics = train(cfg)
    assert metrics["replicas"] == 2
    with pytest.raises(TranslatorError, match="training split gives no batch.*max_tokens=4 "):
        train(tiny_run(tmp_path / "run2", "data.max_tokens=4"))
    history = [json.loads(line) for line in open(tmp_path / "run" / "history.jsonl")]
    assert np.isfinite(metrics["loss"]) and history[1]["loss"] < history[0]["loss"]


def test_checkpoint_averaging_writes_the_mean_of_the_last_epochs(tmp_path):
    cfg = tiny_run(tmp_path / "run", "train.epochs=3", "train.steps_per_epoch=5",
                   "train.average_last=2")  # fmt: skip
    train(cfg)
    run_dir = tmp_path / "run"
    kept = sorted(p.name for p in (run_dir / "epochs").iterdir())
    assert kept == ["epoch_0002.weights.h5", "epoch_0003.weights.h5"]

    def weights(name):
        model = Translator.from_run_dir(run_dir).model
        model.load_weights(str(name))
        return [np.asarray(w) for w in model.weights]

    second, third = weights(run_dir / "epochs" / kept[0]), weights(run_dir / "epochs" / kept[1])
    averaged = weights(run_dir / "averaged.weights.h5")
    for a, b, mean in zip(second, third, averaged, strict=True):
        np.testing.assert_allclose(mean, (a + b) / 2, atol=1e-6)
    assert not np.allclose(second[0], third[0])  # the epochs really differ
    for choice in ("averaged", "auto"):  # auto prefers the average when the run has one
        translator = Translator.from_run_dir(run_dir, weights=choice)
        np.testing.assert_allclose(np.asarray(translator.model.weights[0]), averaged[0], atol=1e-6)
    assert RunDir(run_dir).choose_weights("auto").name == "averaged.weights.h5"
    (run_dir / "averaged.weights.h5").unlink()
    assert RunDir(run_dir).choose_weights("auto").name == "best.weights.h5"


# The same run, uninterrupted or killed after an epoch, on a clock that advances one second per
# training step (so both see the same epoch times), for a budget of 30 seconds of 5-step epochs.
ON_A_STEP_CLOCK = textwrap.dedent(
    """
    import os, signal, sys, time
    import keras
    from translator.training import trainer

    clock = [0.0]
    time.perf_counter = lambda: clock[0]
    kill_after = int(os.environ.get("KILL_AFTER_EPOCH", "0"))
    kill_at_step = int(os.environ.get("KILL_AT_STEP", "0"))
    if os.environ.get("KILL_BEFORE_METRICS"):  # training, averaging and backup done
        from translator.run_dir import RunDir
        RunDir.save_metrics = lambda self, metrics: os.kill(os.getpid(), signal.SIGKILL)

    class Tick(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            clock[0] += 1.0

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # after that epoch's backup

        def on_train_batch_end(self, batch, logs=None):
            if kill_at_step and int(self.model.optimizer.iterations.numpy()) == kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)  # after that update (and its backup, if any)

    make_callbacks = trainer.make_callbacks
    trainer.make_callbacks = lambda *args: [Tick(), *make_callbacks(*args), Kill()]
    sys.argv = ["train.py", *sys.argv[1:]]
    sys.path.insert(0, {scripts!r})
    import train
    train.main()
    """
)


def clocked_run(tmp_path, name: str, *overrides: str, **kill) -> subprocess.CompletedProcess:
    """A tiny run on the step clock (`ON_A_STEP_CLOCK`), its decay following its time budget
    (`train.max_minutes` among `overrides`), killed as
    `kill_after` (an epoch) or `kill_at_step` (an update) say."""
    driver = tmp_path / "clocked_train.py"
    driver.write_text(ON_A_STEP_CLOCK.format(scripts=str(PROJECT_ROOT / "scripts")))
    overrides = [
        *TINY_BASE, "model=tiny", "data.max_pairs=64", "tokenizer.shared=false",
        "tokenizer.vocab_size=1000", "train.warmup_steps=4", "train.decay=linear",
        "train.decay_steps=auto", "train.tensorboard=false", f"run_dir={tmp_path / name}",
        *overrides,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT),
           "KILL_AFTER_EPOCH": str(kill.get("kill_after", 0)),
           "KILL_AT_STEP": str(kill.get("kill_at_step", 0))}  # fmt: skip
    return subprocess.run([sys.executable, driver, *overrides], env=env, capture_output=True)


def test_a_resumed_run_is_the_same_experiment(tmp_path):
    """Killed after epoch 3 and resumed, a run with a time budget and the learning rate's zero
    point following it gives the uninterrupted run's rates, epochs, budget and best weights."""
    settings = ("train.epochs=20", "train.steps_per_epoch=5", "train.max_minutes=0.5")
    assert clocked_run(tmp_path, "straight", *settings).returncode == 0
    assert clocked_run(tmp_path, "resumed", *settings, kill_after=3).returncode == -9
    resumed = clocked_run(tmp_path, "resumed", *settings)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]

    def history(name):
        return [json.loads(line) for line in open(tmp_path / name / "history.jsonl")]

    straight, again = history("straight"), history("resumed")
    assert [h["epoch"] for h in again] == [h["epoch"] for h in straight] == [1, 2, 3, 4, 5, 6]
    for key in ("learning_rate", "decay_steps", "budget_minutes_left", "loss", "val_loss"):
        assert [h.get(key) for h in again] == pytest.approx([h.get(key) for h in straight]), key
    # The best weights compute the same function. (Not every weight is equal: parameters with a
    # zero gradient in exact arithmetic, such as the attention key bias, which softmax ignores,
    # get float noise that Adam turns into full-size steps in either run.)
    ids = np.random.default_rng(0).integers(4, 300, size=(4, 9)).astype(np.int32)
    logits = [Translator.from_run_dir(tmp_path / name, weights="best").model((ids, ids))
              for name in ("straight", "resumed")]  # fmt: skip
    np.testing.assert_allclose(logits[0], logits[1], atol=2e-3)


def test_a_run_killed_mid_epoch_resumes_at_its_last_step_backup(tmp_path):
    """SIGKILLed after update 13 (epoch 2 of 8-update epochs), a run backing up every 3
    updates restarts at update 12 and trains on as the uninterrupted run: the same data,
    dropout masks, running metrics, budget and rates, so the same losses and weights. With
    gradient accumulation (2 batches per update), whose backups fall between updates."""
    settings = ("train.epochs=3", "train.steps_per_epoch=8", "train.max_minutes=1.5",
                "train.backup_every_steps=3", "model.dropout=0.1",
                "train.accumulate_steps=2")  # fmt: skip
    assert clocked_run(tmp_path, "straight", *settings).returncode == 0
    killed = clocked_run(tmp_path, "resumed", *settings, kill_at_step=13)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    state = json.loads((tmp_path / "resumed" / "backup" / "run_state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["optimizer_steps"]) == (1, 4, 12)
    resumed = clocked_run(tmp_path, "resumed", *settings)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert "resumed after update 4 of epoch 2" in resumed.stderr.decode()

    def history(name):
        return [json.loads(line) for line in open(tmp_path / name / "history.jsonl")]

    straight, again = history("straight"), history("resumed")
    assert [h["epoch"] for h in again] == [h["epoch"] for h in straight] == [1, 2, 3]
    keys = ("loss", "masked_accuracy", "tokens", "val_loss", "learning_rate", "epoch_seconds",
            "budget_minutes_left")  # fmt: skip
    for key in keys:  # tolerance: float32 sums in another order of kernels, and none here
        assert [h[key] for h in again] == pytest.approx([h[key] for h in straight], rel=1e-5), key
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert metrics["optimizer_steps"] == 24
    weights = [Translator.from_run_dir(tmp_path / name, weights="last").model.weights
               for name in ("straight", "resumed")]  # fmt: skip
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_accumulating_two_batches_updates_as_one_batch_of_both(tmp_path, multi30k_tokenizers):
    """train.accumulate_steps=2: two batches of B pairs make one update equal to one batch of
    2B (every target the same length, so the per-token means agree); the optimizer counts one
    update and the learning-rate schedule advances once. Adam with epsilon 1 keeps its first
    step smooth in the gradient (a tiny epsilon makes it lr x sign(g), which amplifies float
    noise where g is near 0), so the weights agree to float32 precision."""
    import keras

    from translator.training.trainer import build_model

    def model(accumulate):
        cfg = tiny_run(tmp_path, f"train.accumulate_steps={accumulate}", "train.epsilon=1.0",
                       "tokenizer.shared=true")  # fmt: skip
        keras.utils.set_random_seed(0)
        return cfg, build_model(cfg, multi30k_tokenizers, example)

    rng = np.random.default_rng(0)
    source = rng.integers(4, 500, size=(8, 11)).astype(np.int32)
    target = rng.integers(4, 500, size=(8, 10)).astype(np.int32)
    example = ((source[:1], target[:1]), target[:1])
    cfg, one = model(1)
    _, two = model(2)
    for a, b in zip(one.weights, two.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the same start
    start = [np.asarray(w) for w in two.trainable_weights]

    one.train_on_batch((source, target), target)
    two.train_on_batch((source[:4], target[:4]), target[:4])
    assert int(two.optimizer.iterations) == 0
    for before, after in zip(start, two.trainable_weights, strict=True):
        np.testing.assert_array_equal(before, np.asarray(after))  # only accumulated
    two.train_on_batch((source[4:], target[4:]), target[4:])
    assert int(two.optimizer.iterations) == int(one.optimizer.iterations) == 1
    for a, b in zip(one.trainable_weights, two.trainable_weights, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # The next update's rate is the schedule's at update 1 in both, not at batch 2.
    assert float(two.optimizer.learning_rate) == pytest.approx(float(one.optimizer.learning_rate))
    schedule = one.optimizer._learning_rate
    assert float(two.optimizer.learning_rate) == pytest.approx(float(schedule(1)))
    assert float(schedule(2)) != pytest.approx(float(schedule(1)))


def test_accumulating_gradients_refuses_what_cannot_work(tmp_path):
    with pytest.raises(TranslatorError, match="accumulate_steps>1 cannot be combined with sev"):
        train(tiny_run(tmp_path / "r2", "train.accumulate_steps=2", "train.distribution=mirrored"))
    with pytest.raises(TranslatorError, match="accumulate_steps>1 .*mixed_float16"):
        train(tiny_run(tmp_path / "r3", "train.accumulate_steps=2",
                       "train.precision=mixed_float16"))  # fmt: skip
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


def test_a_run_killed_after_training_but_before_its_metrics_finishes_on_restart(tmp_path):
    """The budget stopped the run (on a step clock: 3 epochs of 5 one-second steps fit in 18 s)
    and it averaged; killed before metrics.json, it is neither finished nor lost: started again,
    it trains no further epoch, averages and finishes."""
    run_dir = tmp_path / "run"
    driver = tmp_path / "clocked_train.py"
    driver.write_text(ON_A_STEP_CLOCK.format(scripts=str(PROJECT_ROOT / "scripts")))
    overrides = [
        *TINY_BASE, "model=tiny", "data.max_pairs=64", "tokenizer.vocab_size=1000",
        "train.epochs=20", "train.steps_per_epoch=5", "train.max_minutes=0.3",
        "train.average_last=2", "train.tensorboard=false", f"run_dir={run_dir}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    killed = subprocess.run([sys.executable, driver, *overrides], capture_output=True,
                            env={**env, "KILL_BEFORE_METRICS": "1"})  # fmt: skip
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert (run_dir / "backup").is_dir() and not (run_dir / "metrics.json").exists()
    trained = (run_dir / "history.jsonl").read_text()
    assert len(trained.splitlines()) == 3  # the budget stopped it
    (run_dir / "averaged.weights.h5").unlink()  # as if killed before averaging, too

    script = [sys.executable, driver, *overrides]
    finished = subprocess.run(script, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert (run_dir / "history.jsonl").read_text() == trained  # no further epoch
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_this_session"] == 0 and metrics["optimizer_steps"] == 15
    assert metrics["val_loss"] == json.loads(trained.splitlines()[-1])["val_loss"]
    assert (run_dir / "averaged.weights.h5").exists() and not (run_dir / "backup").exists()
    again = subprocess.run(script, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "already holds a finished run" in again.stderr


class FakeModel:
    stop_training = False


def test_time_budget_stops_when_the_next_epoch_would_overrun(monkeypatch):
    from translator.training import callbacks

    clock = iter([0.0, 20.0, 40.0, 60.0])  # three 20-second epochs: a start, then each end
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    budget = callbacks.TimeBudget(minutes=1.0, start=0.0)
    budget.set_model(FakeModel())
    budget.on_train_begin()
    stops = []
    for epoch in range(3):
        budget.on_epoch_begin(epoch)
        budget.on_epoch_end(epoch)
        stops.append(budget.model.stop_training)
    # After 40 s another 20-second epoch still fits in 60 s; after 60 s it does not.
    assert stops == [False, False, True] and budget.stopped_epoch == 3


class FakeOptimizer:
    def __init__(self):
        self.iterations = tf.Variable(0, dtype=tf.int64)


def clocked_budget(monkeypatch, readings, plan, minutes, steps=5, validation_batches=0):
    from translator.training import callbacks

    clock = iter(readings)
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    budget = callbacks.TimeBudget(minutes, 0.0, plan, validation_batches)
    model = FakeModel()
    model.optimizer = FakeOptimizer()
    budget.set_model(model)
    budget.set_params({"steps": steps, "epochs": 100})
    return budget, model


def test_time_budget_moves_the_zero_point_to_the_last_step_that_fits(monkeypatch):
    # A 100-second budget; epochs of 5 steps taking 10, 20, 10, 10 and 30 seconds.
    schedule = LinearDecaySchedule(0.01, warmup_steps=4, total_steps=1000)
    plan = StepPlan(plan_settings(), steps_per_epoch=5, schedule=schedule)
    readings = [0.0, 10.0, 30.0, 40.0, 50.0, 80.0]  # the first start, then each end
    budget, model = clocked_budget(monkeypatch, readings, plan, minutes=100 / 60)
    budget.on_train_begin()
    moved = []
    for epoch in range(5):
        budget.on_epoch_begin(epoch)
        model.optimizer.iterations.assign_add(5)
        logs = {}
        budget.on_epoch_end(epoch, logs)
        moved.append(logs.get("decay_steps"))
    # Epochs left = floor(spare / median epoch) + 1, spare = budget - elapsed - longest epoch.
    # After 10 s: floor(80 / 10) + 1 = 9 more, zero at step 5 + 45 = 50 (10 epochs fit exactly).
    # After 30 s: floor(50 / 15) + 1 = 4 more -> 10 + 20 = 30. After 40 s: floor(40 / 10) + 1
    # = 5 -> 15 + 25 = 40. After 50 s: floor(30 / 10) + 1 = 4 -> 20 + 20 = 40. After 80 s the
    # longest epoch (30 s) no longer fits: the run stops and the zero point stays.
    assert moved == [50, 30, 40, 40, None]
    assert schedule.total_steps == 40 and budget.stopped_epoch == 5 and model.stop_training


def test_warmup_and_averaging_follow_the_steps_a_budget_predicts(monkeypatch):
    """The same config on a machine three times slower: a third of the steps, and a warm-up
    and an averaging window a third as long (within the warm-up's floor and ceiling)."""

    def first_epoch(seconds_per_step):
        schedule = LinearDecaySchedule(0.01, warmup_steps=800, total_steps=100 * 100)
        cfg = plan_settings(warmup_fraction=0.1, warmup_steps=800, warmup_min_steps=50,
                            average_fraction=0.25)  # fmt: skip
        plan = StepPlan(cfg, steps_per_epoch=100, schedule=schedule)
        plan.update(100, step=0)  # before the budget knows anything: the configured epochs
        assert schedule.warmup_steps == 800  # the ceiling, until the speed is measured
        # Readings: the start, step 5, step 30 (the probe), then the end of the first epoch.
        probe = [0.0, 5 * seconds_per_step, 30 * seconds_per_step, 100 * seconds_per_step]
        # 100 steps and 30 validation batches (at a third of a step each) per epoch.
        budget, model = clocked_budget(monkeypatch, probe, plan, minutes=20, steps=100,
                                       validation_batches=30)  # fmt: skip
        budget.on_train_begin()
        budget.on_epoch_begin(0)
        for batch in range(31):
            model.optimizer.iterations.assign_add(1)
            budget.on_train_batch_end(batch)
        return schedule, plan

    # 0.1 s a step: 11 s an epoch (100 + 30 / 3 steps), 1,200 / 11 -> 109 epochs, capped at 100.
    fast, fast_plan = first_epoch(0.1)
    assert (fast.warmup_steps, fast.total_steps) == (800, 10_000)
    assert fast_plan.average_window(fast_plan.predicted_epochs) == 25
    # 0.3 s a step: 33 s an epoch, 36 epochs, 3,600 steps: 360 warm-up steps, 9 epochs averaged.
    slow, slow_plan = first_epoch(0.3)
    assert (slow.warmup_steps, slow.total_steps) == (360, 3600)
    assert slow_plan.predicted_epochs == 36 and slow_plan.epochs_to_keep() == 9 + 2
    # 3 s a step: 3 epochs, 300 steps: the warm-up stops at its floor of 50.
    slowest, _ = first_epoch(3.0)
    assert (slowest.warmup_steps, slowest.total_steps) == (50, 300)


def test_time_budget_ends_a_run_normally(tmp_path):
    cfg = tiny_run(tmp_path / "run", "train.epochs=20", "train.steps_per_epoch=3",
                   "train.max_minutes=0.0001", "train.average_last=2")  # fmt: skip
    metrics = train(cfg)
    assert metrics["epochs_this_session"] == 1
    names = set(os.listdir(tmp_path / "run"))
    assert {"metrics.json", "last.weights.h5", "averaged.weights.h5"} <= names
    assert "backup" not in names  # finished, not interrupted: a restart would refuse


def test_linear_decay_reaches_zero_at_decay_steps_and_logs_the_rate(tmp_path):
    cfg = tiny_run(tmp_path / "run", "train.decay=linear", "train.warmup_steps=10",
                   "train.decay_steps=60", "train.epochs=3",
                   "train.steps_per_epoch=20")  # fmt: skip
    train(cfg)
    history = [json.loads(line) for line in open(tmp_path / "run" / "history.jsonl")]
    peak = 0.3 * 64**-0.5 * 10**-0.5  # lr_scale * d_model^-0.5 * warmup^-0.5
    rates = [h["learning_rate"] for h in history]  # after 20, 40 and 60 updates
    assert rates == pytest.approx([0.8 * peak, 0.4 * peak, 0.0], rel=1e-5, abs=1e-9)
    with pytest.raises(TranslatorError, match="train.decay='cosine': expected inverse_sqrt"):
        train(tiny_run(tmp_path / "bad", "train.decay=cosine"))
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_auto_decay_follows_the_time_budget_and_logs_its_zero_point(tmp_path, monkeypatch):
    from translator.training import callbacks

    # A clock that moves one second per reading, so the epochs the budget allows do not depend
    # on how fast this machine traces and runs them.
    ticks = itertools.count()
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: float(next(ticks)))
    cfg = tiny_run(tmp_path / "run", "train.decay=linear", "train.warmup_steps=4",
                   "train.decay_steps=auto", "train.max_minutes=0.5", "train.epochs=200",
                   "train.steps_per_epoch=4")  # fmt: skip
    metrics = train(cfg)
    history = [json.loads(line) for line in open(tmp_path / "run" / "history.jsonl")]
    assert 2 <= len(history) < 200  # the budget, not the epoch count, ended it
    assert metrics["optimizer_steps"] == 4 * len(history)
    peak = 0.3 * 64**-0.5 * 4**-0.5
    for epoch, h in enumerate(history[:-1], start=1):  # the last epoch stops instead
        step, end = 4 * epoch, h["decay_steps"]
        assert step < end < 800  # aims past now, far below the 200-epoch starting guess
        assert h["learning_rate"] == pytest.approx(peak * (end - step) / (end - 4), rel=1e-5)
    assert "decay_steps" not in history[-1]
    assert history[-1]["learning_rate"] < history[0]["learning_rate"]
    with pytest.raises(TranslatorError, match="decay_steps=auto: .* needs train.max_minutes"):
        train(tiny_run(tmp_path / "bad", "train.decay=linear", "train.decay_steps=auto"))
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_shared_embeddings_without_a_shared_vocabulary_are_refused_before_any_work(tmp_path):
    with pytest.raises(TranslatorError, match="share_embeddings=true needs one vocabulary"):
        train(tiny_run(tmp_path / "run", "model.share_embeddings=true"))
    assert not (tmp_path / "run").exists()


def test_bad_values_are_refused_before_any_work(tmp_path):
    with pytest.raises(TranslatorError, match=r"data.source_dropout=1.0: expected a number"):
        train(tiny_run(tmp_path / "run", "data.source_dropout=1.0"))
    assert not (tmp_path / "run").exists()


# Three epochs of a tiny run with one shared vocabulary and small batches: what the data
# stages (BiT, concatenation from or until a step) are compared with, batch for batch.
STAGED = ("tokenizer.shared=true", "data.batch_tokens=256", "train.epochs=3")


@pytest.fixture(scope="module")
def plain_staged_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("plain_staged")
    metrics = train(tiny_run(run_dir, *STAGED))
    return run_dir, metrics["optimizer_steps"] // 3


def epoch_history(run_dir) -> list[dict]:
    return [json.loads(line) for line in open(run_dir / "history.jsonl")]


@pytest.mark.parametrize("setting", ["bidirectional_steps", "bidirectional_fraction"])
def test_bidirectional_steps_come_first_then_the_forward_stream(tmp_path, setting,
                                                                 plain_staged_run):  # fmt: skip
    plain_dir, per_epoch = plain_staged_run
    value = per_epoch if setting == "bidirectional_steps" else 1 / 3  # of 3 epochs: the first
    bidirectional = tiny_run(tmp_path / "bit", *STAGED, f"data.{setting}={value}")
    assert train(bidirectional)["optimizer_steps"] == 3 * per_epoch

    # Epoch 1 drew its batches from the pairs and their reversals (other targets, other token
    # counts); then the de->en stream starts, batch for batch the plain run's.
    plain, bit = epoch_history(plain_dir), epoch_history(tmp_path / "bit")
    assert [h["tokens"] for h in bit][1:] == [h["tokens"] for h in plain][:2]
    assert bit[0]["tokens"] != plain[0]["tokens"]
    assert bit[-1]["loss"] < bit[0]["loss"]


@pytest.mark.parametrize("setting, key, joined, replayed", [
    # From a third on: the first epoch is the plain run's first, batch for batch.
    ("data.concat_from=0.34", "concat_steps", [1, 2], (0, 0)),
    # Until two thirds: the last epoch is the plain stream from its start (the plain run's first).
    ("data.concat_until=0.67", "concat_end_steps", [0, 1], (2, 0)),
])  # fmt: skip
def test_pairs_are_joined_only_in_the_concatenation_stage(
    tmp_path, caplog, plain_staged_run, setting, key, joined, replayed
):
    plain_dir, per_epoch = plain_staged_run
    fraction = float(setting.split("=")[1])
    with caplog.at_level(logging.INFO, logger="translator"):
        train(tiny_run(tmp_path / "staged", *STAGED, "data.concat=1.0", setting))
    assert f"'{key}': {round(fraction * 3 * per_epoch)}" in caplog.text

    # In the stage every example joins 2-3 pairs (fewer, longer examples: other token counts).
    plain, staged = epoch_history(plain_dir), epoch_history(tmp_path / "staged")
    assert all(staged[epoch]["tokens"] != plain[epoch]["tokens"] for epoch in joined)
    ours, theirs = replayed
    assert staged[ours]["tokens"] == plain[theirs]["tokens"]
    assert staged[-1]["loss"] < staged[0]["loss"]


@pytest.mark.parametrize("settings, message", [
    (["data.concat_from=0.5"], r"concat_from=0.5: expected 0 when data.concat=0"),
    (["data.concat_until=0.5"], r"concat_until=0.5: expected 1 when data.concat=0"),
    (["data.concat=0.5", "data.concat_from=0.5", "data.concat_until=0.5"],
     r"concat_until=0.5: expected a fraction above data.concat_from=0.5"),
])  # fmt: skip
def test_concatenation_stages_that_join_nothing_are_refused_before_any_work(tmp_path, settings,
                                                                            message):  # fmt: skip
    with pytest.raises(TranslatorError, match=message):
        train(tiny_run(tmp_path / "run", *settings))
    assert not (tmp_path / "run").exists()


def test_resumed_epochs_read_the_backup_of_an_interrupted_run(tmp_path):
    assert RunDir(tmp_path).resumed_epochs() == 0
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": 3}))
    assert RunDir(tmp_path).resumed_epochs() == 3


def test_r_drop_training_lowers_the_loss_and_changes_the_objective(tmp_path):
    losses = {}
    for consistency in (0, 1):
        cfg = tiny_run(tmp_path / f"c{consistency}", "model.dropout=0.1", "train.epochs=2",
                       "train.steps_per_epoch=10", f"train.consistency={consistency}")  # fmt: skip
        train(cfg)
        history = tmp_path / f"c{consistency}" / "history.jsonl"
        losses[consistency] = [json.loads(line)["loss"] for line in open(history)]
    assert losses[1][1] < losses[1][0]
    # Same seed, data and weights: only the second pass and its KL term set the runs apart.
    assert losses[1][0] != pytest.approx(losses[0][0], rel=1e-3)


def test_source_dropout_training_lowers_the_loss_on_other_inputs(tmp_path):
    losses = {}
    for rate in (0.0, 0.3):
        cfg = tiny_run(tmp_path / f"r{rate}", "train.epochs=2", "train.steps_per_epoch=10",
                       f"data.source_dropout={rate}")  # fmt: skip
        train(cfg)
        history = tmp_path / f"r{rate}" / "history.jsonl"
        losses[rate] = [json.loads(line) for line in open(history)]
    assert losses[0.3][1]["loss"] < losses[0.3][0]["loss"]
    # Same seed, data and weights: only the hidden source pieces set the runs apart, and
    # validation (no dropout) sees the other weights that training on them gave.
    assert losses[0.3][0]["loss"] != pytest.approx(losses[0.0][0]["loss"], rel=1e-3)
    assert losses[0.3][0]["val_loss"] != pytest.approx(losses[0.0][0]["val_loss"], rel=1e-4)


def test_shared_embeddings_train_with_a_shared_vocabulary(tmp_path):
    cfg = tiny_run(tmp_path / "run", "model.share_embeddings=true", "tokenizer.shared=true",
                   "train.epochs=2", "train.steps_per_epoch=10")  # fmt: skip
    metrics = train(cfg)
    history = [json.loads(line) for line in open(tmp_path / "run" / "history.jsonl")]
    assert history[1]["loss"] < history[0]["loss"]
    model = load_run(RunDir(tmp_path / "run"), "last")[1]
    assert model.share_embeddings and model.encoder.embedding is model.decoder.embedding
    assert metrics["optimizer_steps"] == 20


def test_one_training_iterator_serves_every_epoch_and_an_epoch_is_one_pass(tmp_path, monkeypatch):
    created = []
    dataset_iter = tf.data.Dataset.__iter__
    monkeypatch.setattr(
        tf.data.Dataset, "__iter__", lambda self: created.append(self) or dataset_iter(self)
    )
    cfg = tiny_run(tmp_path / "run", "train.epochs=3", "data.batch_tokens=256")
    metrics = train(cfg)
    training = [d for d in created if d.cardinality() < 0]  # validation's length is known
    # Once for all three epochs: the stream (by the run's StreamFeed) and the feed's batches (by
    # Keras). The model is built on a validation batch.
    assert len(training) == 2
    monkeypatch.undo()

    corpus = load_corpus(cfg.data, "train")
    tokenizers = TokenizerPair.load(tmp_path / "run" / "tokenizer")
    batches = list(make_batches(corpus, tokenizers, cfg.data, training=False))
    tokens = sum(int(np.sum(y.numpy() != PAD_ID)) for _, y in batches)
    per_pass = batches_per_pass(corpus, tokenizers, cfg.data, replicas=1)
    assert len(batches) > per_pass > 3 and metrics["optimizer_steps"] == 3 * round(per_pass)
    # Three epochs saw the data three times, but for the pairs still waiting in a bucket for a
    # full batch (at most a batch of each length bucket).
    seen = sum(json.loads(line)["tokens"] for line in open(tmp_path / "run" / "history.jsonl"))
    largest = max(int(np.sum(y.numpy() != PAD_ID)) for _, y in batches)
    assert abs(seen - 3 * tokens) < largest * len(batch_sizes(cfg.data, 1))


def test_subword_regularization_trains_on_new_segmentations_every_epoch(tmp_path):
    cfg = tiny_run(tmp_path / "run", "tokenizer.sample_nbest_size=-1", "tokenizer.sample_alpha=0.2",
                   "train.epochs=3", "data.batch_tokens=256")  # fmt: skip
    train(cfg)
    history = [json.loads(line) for line in open(tmp_path / "run" / "history.jsonl")]
    assert len({h["tokens"] for h in history}) > 1  # new segmentations, new token counts
    assert history[-1]["loss"] < history[0]["loss"]
    assert not TokenizerPair.load(tmp_path / "run" / "tokenizer").samples
    # Validation takes the best segmentation: the same tokens every epoch.
    assert len({h["val_tokens"] for h in history}) == 1


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_a_tiny_model_trains_with_each_attention_score(tmp_path, score):
    cfg = tiny_run(tmp_path / "run", f"model.attention_score={score}", "train.epochs=2",
                   "train.steps_per_epoch=10")  # fmt: skip
    train(cfg)
    history = [json.loads(line) for line in open(tmp_path / "run" / "history.jsonl")]
    assert history[1]["loss"] < history[0]["loss"] - 0.1
    model = load_run(RunDir(tmp_path / "run"), "last")[1]
    assert model.attention_score == score  # model.json keeps it, so inference rebuilds it


def interrupted_run(tmp_path, *overrides: str) -> RunDir:
    """A run directory as an interrupted run of `tiny_run(..., *overrides)` leaves it, for what
    resuming checks (its config.yaml and a backup folder; no training)."""
    run = RunDir(tmp_path / "run")
    run.backup_dir.mkdir(parents=True)
    run.save_config(tiny_run(run.path, *overrides))
    return run


def test_resuming_with_a_setting_that_changes_the_experiment_is_refused_naming_it(tmp_path):
    from translator.training.trainer import check_resume

    run = interrupted_run(tmp_path, "data.batch_tokens=4096")
    changed = tiny_run(run.path, "tokenizer.vocab_size=2000", "data.batch_tokens=8192",
                       "train.verbose=0", "train.threads=1", "decode.max_length_b=5",
                       "paths.outputs=/elsewhere")  # fmt: skip
    with pytest.raises(TranslatorError) as error:
        check_resume(changed, run)
    assert str(error.value) == (
        f"{run}: this run was started with data.batch_tokens=4096, tokenizer.vocab_size=1000; "
        "this command has 8192, 2000 (resume with the same settings, use another run_name, or "
        "pass train.allow_changes=[data.batch_tokens] for settings that may change; "
        "tokenizer.* and model.* never change within a run)"
    )
    check_resume(tiny_run(run.path, "data.batch_tokens=4096"), run)  # the same: resumes
    check_resume(tiny_run(run.path, "data.batch_tokens=4096", "train.verbose=0",
                          "train.threads=1", "decode=beam"), run)  # fmt: skip
    fresh = RunDir(tmp_path / "failed_before_anything_to_resume")
    fresh.path.mkdir()
    fresh.save_config(tiny_run(fresh.path))  # no tokenizers, no backup: nothing to resume
    check_resume(changed, fresh)


def test_train_allow_changes_accepts_a_longer_budget_but_never_a_new_vocabulary(tmp_path):
    from translator.training.trainer import check_resume

    run = interrupted_run(tmp_path, "train.max_minutes=30")
    longer = ("train.max_minutes=60", "train.epochs=40")
    with pytest.raises(TranslatorError, match=r"train.epochs=20, train.max_minutes=30.0; this "
                       r"command has 40, 60.0 .*allow_changes=\[train.epochs,train.max_minutes\]"
                       ):  # fmt: skip
        check_resume(tiny_run(run.path, *longer), run)
    check_resume(tiny_run(run.path, *longer, "train.allow_changes=[train]"), run)
    allowed = "train.allow_changes=[train.max_minutes,train.epochs,tokenizer.vocab_size]"
    check_resume(tiny_run(run.path, *longer, allowed), run)
    with pytest.raises(TranslatorError, match="tokenizer.vocab_size=1000; this command has 500"):
        check_resume(tiny_run(run.path, *longer, allowed, "tokenizer.vocab_size=500"), run)


def test_only_the_chief_takes_the_runs_lock(tmp_path, monkeypatch):
    from translator.training import workers

    run = RunDir(tmp_path / "run")
    with run.locked("another command"):
        monkeypatch.setattr(workers, "worker_role", lambda strategy: (1, False))
        with workers.worker_run_dir(run, None) as own:  # a worker beside the chief
            assert own != run and run.lock_file.exists()
        monkeypatch.setattr(workers, "worker_role", lambda strategy: (0, True))
        with pytest.raises(TranslatorError, match=f"{run.lock_file}: the run is in use by pid"):
            with workers.worker_run_dir(run, None):
                pass


def test_a_failing_training_releases_the_runs_lock(tmp_path):
    from translator.errors import CorpusError

    with pytest.raises(CorpusError):
        train(tiny_run(tmp_path / "run", f"data.path={tmp_path / 'missing'}"))
    assert (tmp_path / "run").is_dir() and not RunDir(tmp_path / "run").lock_file.exists()
