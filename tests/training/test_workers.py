"""Multi-worker training: real worker processes on localhost, one MultiWorkerMirroredStrategy."""

import json
import os
import textwrap
import time

import numpy as np
import pytest

from tests.conftest import TINY_BASE
from translator.config import PROJECT_ROOT, load_config
from translator.errors import TranslatorError
from translator.training.workers import free_ports, tf_config, train_on_workers

pytestmark = pytest.mark.slow

# The training script, plus: each worker saves its final weights as worker<i>.npz in DUMP, and
# the worker KILL_WORKER is SIGKILLed after update KILL_AT_STEP.
WORKER = textwrap.dedent(
    """
    import json, os, signal, sys
    import translator.cli  # its filter of TensorFlow's native start-up lines, as train.py has
    import keras
    import numpy as np
    from translator.training import trainer

    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    kill = index == int(os.environ.get("KILL_WORKER", "-1"))

    class Dump(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if kill and int(self.model.optimizer.iterations.numpy()) == 3:
                os.kill(os.getpid(), signal.SIGKILL)

        def on_train_end(self, logs=None):
            weights = [np.asarray(w) for w in self.model.weights]
            np.savez(os.path.join(os.environ["DUMP"], f"worker{{index}}.npz"), *weights)

    make_callbacks = trainer.make_callbacks
    trainer.make_callbacks = lambda *args: [*make_callbacks(*args), Dump()]
    sys.argv = ["train.py", *sys.argv[1:]]
    sys.path.insert(0, {scripts!r})
    import train
    train.main()
    """
)


def launch(tmp_path, *overrides: str, **env) -> None:
    """`make train-workers` with 2 workers of the tiny de->en model, in this process."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(scripts=str(PROJECT_ROOT / "scripts")))
    overrides = [
        *TINY_BASE, "model=tiny", "data.max_pairs=64", "tokenizer.shared=false",
        "tokenizer.vocab_size=1000", "train.warmup_steps=10", "train.tensorboard=false",
        "train.verbose=2", f"run_dir={tmp_path / 'run'}", "workers=2", *overrides,
    ]  # fmt: skip
    cfg = load_config("train_workers", overrides)
    os.environ.update(DUMP=str(tmp_path), PYTHONPATH=str(PROJECT_ROOT), **env)
    try:
        train_on_workers(cfg, overrides, tmp_path / "logs", script)
    finally:
        for key in ("DUMP", "KILL_WORKER"):
            os.environ.pop(key, None)


def test_multi_worker_training_survives_a_dead_worker_and_resumes(tmp_path, capfd):
    """Two worker processes train one model. Worker 1 is SIGKILLed after update 3: worker 0
    exits on its own within its collective timeout with a one-line error naming the lost peer,
    instead of hanging, and leaves its backup of update 2. The same command resumes there and
    finishes: the same weights on both workers, a falling loss, and the run directory written
    once, by the chief (worker 0). With a time budget, whose clock the workers share."""
    settings = ("train.epochs=3", "train.steps_per_epoch=6", "train.backup_every_steps=2",
                "train.worker_timeout_seconds=20", "train.max_minutes=30")  # fmt: skip
    start = time.monotonic()
    with pytest.raises(TranslatorError, match="training on 2 workers failed"):
        launch(tmp_path, *settings, KILL_WORKER="1")
    output = capfd.readouterr().err
    assert time.monotonic() - start < 240
    assert "strategy CollectiveAllReduceStrategy with 2 replica(s)" in output  # multi-worker
    errors = [line for line in output.splitlines() if line.startswith("[worker 0] error:")]
    assert len(errors) == 1, output[-3000:]
    assert "worker 0: another worker stopped responding" in errors[0]
    assert "run the same command again to resume" in errors[0]
    run = tmp_path / "run"
    state = json.loads((run / "backup" / "run_state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["optimizer_steps"]) == (0, 2, 2)

    launch(tmp_path, *settings)
    output = capfd.readouterr().err
    assert output.count("resumed after update 2 of epoch 1") == 2  # both workers
    # Each from its own saved position in the data: no worker replays its stream.
    assert output.count("resuming the training data at its saved position") == 2
    assert "replaying the stream" not in output
    chief, other = (np.load(tmp_path / f"worker{i}.npz") for i in (0, 1))
    assert len(chief.files) == len(other.files) > 10
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name])
    history = [json.loads(line) for line in open(run / "history.jsonl")]
    assert [h["epoch"] for h in history] == [1, 2, 3]  # once: only the chief appends
    # Falling from the first epoch (each worker's 32 pairs make every epoch's mean noisy).
    assert max(history[1]["loss"], history[2]["loss"]) < history[0]["loss"] - 0.3
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["optimizer_steps"] == 18
    assert not (run / "backup").exists()
    # The other worker's copies went to a temporary folder, gone now; its log is not in run/.
    temporary = [line.split("files go to ")[1].split()[0] for line in output.splitlines()
                 if "this worker's files go to" in line]  # fmt: skip
    assert len(temporary) == 1 and not os.path.exists(temporary[0])
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["worker1"]
    assert not list(run.glob("*worker*")) and not list(run.glob("*.log"))


def test_multi_worker_settings_are_explained():
    ports = free_ports(3)
    assert len(set(ports)) == 3
    config = json.loads(tf_config(ports, 2))
    assert config["task"] == {"type": "worker", "index": 2}
    assert config["cluster"]["worker"][2] == f"localhost:{ports[2]}"
