"""Fine-tuning (`train.init_from`, `train.freeze`) and validation by translation quality
(`train.validate_bleu_every`, `train.select_by`)."""

import json
import re

import keras
import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from tests.conftest import tiny_run
from translator.config import validate
from translator.data import load_corpus
from translator.errors import TranslatorError
from translator.inference.translator import Translator
from translator.model.transformer import Transformer
from translator.run_dir import RunDir
from translator.tokenizer import TokenizerPair
from translator.training import callbacks
from translator.training.adapt import freeze, initialize, source_run
from translator.training.callbacks import EarlyStoppingOn, SaveWeights
from translator.training.schedules import build_schedule
from translator.training.trainer import build_model, train


def weights_of(path) -> list[tuple[str, np.ndarray]]:
    """A run's weights file: (variable path without the model's name, value), in the model's
    order (the same for every instance; Keras's name counters are not)."""
    model = Translator.from_run_dir(path.parent, weights=path.name.split(".")[0]).model
    return [(w.path.split("/", 1)[1], w.numpy()) for w in model.weights]


def fine_tune_cfg(trained_run, run_dir, *overrides):
    cfg, _ = trained_run
    return tiny_run(run_dir, f"train.init_from={cfg.run_dir}", "train.validate_bleu_every=0",
                    *overrides)  # fmt: skip


def test_init_from_starts_from_the_source_weights_with_a_fresh_optimizer(trained_run, tmp_path):
    cfg = fine_tune_cfg(trained_run, tmp_path / "ft", "train.warmup_steps=7")
    source = Translator.from_run_dir(trained_run[0].run_dir)  # auto: its best weights here
    tokenizers = TokenizerPair.load(RunDir(trained_run[0].run_dir).tokenizer_dir)
    batch = next(iter(source_batches(trained_run)))
    model = build_model(cfg, tokenizers, batch, build_schedule(cfg.model.d_model, cfg.train))
    run = RunDir(tmp_path / "ft")
    run.path.mkdir()
    initialize(model, cfg, run)
    inputs = batch[0]
    np.testing.assert_array_equal(model(inputs, training=False), source.model(inputs))
    assert int(model.optimizer.iterations.numpy()) == 0
    # The new schedule: its own 7-step warm-up (the source's had 50).
    assert model.optimizer._learning_rate.warmup_steps == 7
    origin = json.loads(run.origin_file.read_text())
    assert origin["weights"] == source.weights_file.name
    assert origin["init_from"] == str(RunDir(trained_run[0].run_dir).path.resolve())


def source_batches(trained_run):
    from translator.data import make_batches

    cfg, _ = trained_run
    tokenizers = TokenizerPair.load(RunDir(cfg.run_dir).tokenizer_dir)
    return make_batches(load_corpus(cfg.data, "validation"), tokenizers, cfg.data, training=False)


def test_fine_tuning_keeps_frozen_parts_bitwise_and_moves_the_rest(trained_run, tmp_path):
    cfg = fine_tune_cfg(trained_run, tmp_path / "ft", "train.epochs=1", "train.steps_per_epoch=3",
                        "train.freeze=[embeddings,encoder]")  # fmt: skip
    metrics = train(cfg)
    assert metrics["optimizer_steps"] == 3
    source = RunDir(trained_run[0].run_dir)
    before = weights_of(source.choose_weights("best"))
    after = weights_of(RunDir(tmp_path / "ft").choose_weights("last"))
    embedding = re.compile(r"encoder/|decoder/positional_embedding")
    frozen = [i for i, (p, _) in enumerate(before) if embedding.match(p)]
    moving = [i for i, (p, _) in enumerate(before) if p.startswith(("decoder/layer", "logits"))]
    assert frozen and moving
    for i in frozen:
        np.testing.assert_array_equal(after[i][1], before[i][1], err_msg=before[i][0])
    assert all(not np.array_equal(after[i][1], before[i][1]) for i in moving)
    # It began where the source ended: its first epoch's loss is near the source's last one,
    # far below what the source's own first epoch reached from random weights.
    first = RunDir(tmp_path / "ft").history()[0]["loss"]
    assert first < 0.2 < source.history()[0]["loss"]
    assert (RunDir(tmp_path / "ft").tokenizer_dir / "source.model").read_bytes() == (
        source.tokenizer_dir / "source.model"
    ).read_bytes()


def test_a_model_config_unlike_the_source_runs_is_refused_by_key(trained_run, tmp_path):
    cfg = fine_tune_cfg(trained_run, tmp_path / "ft", "model.d_model=32", "model.num_heads=2")
    with pytest.raises(TranslatorError) as error:
        source_run(cfg)
    message = str(error.value)
    assert "model.d_model=64 there, 32 here" in message
    assert "model.num_heads=4 there, 2 here" in message
    assert "\n" not in message
    # Dropout may differ: it does not shape the weights.
    source_run(fine_tune_cfg(trained_run, tmp_path / "ft", "model.dropout=0.3"))
    with pytest.raises(TranslatorError, match="not found"):
        source_run(tiny_run(tmp_path / "ft", f"train.init_from={tmp_path}/nothing"))


def test_freeze_refuses_what_it_cannot_do(trained_run):
    tied = Transformer(50, 50, num_layers=1, d_model=8, num_heads=2, dff=16, dropout=0.0,
                       tie_embeddings=True)  # fmt: skip
    with pytest.raises(TranslatorError, match="freeze embeddings"):
        freeze(tied, ["output"])
    model = Translator.from_run_dir(trained_run[0].run_dir).model  # 2 layers, its own output
    with pytest.raises(TranslatorError, match=r"layer_0 to layer_1"):
        freeze(model, ["decoder.layer_2"])
    with pytest.raises(TranslatorError, match="nothing is left to train"):
        freeze(model, ["embeddings", "encoder", "decoder", "output"])
    with pytest.raises(TranslatorError, match=r"train\.freeze='attention'"):
        validate(tiny_run("/tmp/unused", "train.freeze=[attention]"))


def test_val_bleu_is_the_bleu_of_the_models_greedy_translations(trained_run):
    cfg, _ = trained_run
    history = RunDir(cfg.run_dir).history()
    assert all("val_bleu" in line and "val_chrf" in line for line in history)
    assert history[-1]["val_bleu"] > 80 > history[0]["val_bleu"]  # it memorised the 64 pairs
    valid = load_corpus(cfg.data, "validation")
    last = Translator.from_run_dir(cfg.run_dir, weights="last")
    hypotheses = last.translate(valid.source[:200])
    expected = BLEU().corpus_score(hypotheses, [valid.target[:200]]).score
    assert history[-1]["val_bleu"] == pytest.approx(expected, abs=1e-6)


class Recorder(keras.Model):
    """A model whose saved weights record the epoch they were saved at."""

    def __init__(self):
        super().__init__()
        self.epoch = self.add_weight(shape=(), initializer="zeros", trainable=False)
        self.stop_training = False


def scripted_epochs(callback, scores: list, key="val_bleu", model=None):
    model = model or Recorder()
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, score in enumerate(scores):
        model.epoch.assign(epoch + 1)
        logs = {"val_loss": 1.0} | ({key: score} if score is not None else {})
        callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            return epoch + 1
    return len(scores)


def test_select_by_bleu_keeps_the_weights_of_the_best_bleu(tmp_path, monkeypatch):
    saved = []
    model = Recorder()
    monkeypatch.setattr(callbacks, "save_weights_atomic",
                        lambda saving, path: saved.append(int(saving.epoch.numpy())))  # fmt: skip
    best = SaveWeights(RunDir(tmp_path), "best", ("val_bleu", "max"))
    scripted_epochs(best, [None, 10.0, 8.0, None, 12.0, 12.0, 3.0], model=model)
    assert saved == [2, 5]  # improvements only; epochs without a BLEU never count
    assert best.best == 12.0
    loss = SaveWeights(RunDir(tmp_path), "best")  # the default: the lowest validation loss
    assert loss._best.key == "val_loss" and loss._best.mode == "min"


def test_early_stopping_on_bleu_counts_only_validated_epochs():
    stopping = EarlyStoppingOn(monitor="val_bleu", mode="max", patience=2)
    # Validated at epochs 1, 3, 5, 7: 10, then 9 and 9.5 (no gain twice) -> stops after 5.
    assert scripted_epochs(stopping, [10.0, None, 9.0, None, 9.5, None, 20.0]) == 5
    stopping = EarlyStoppingOn(monitor="val_bleu", mode="max", patience=2)
    assert scripted_epochs(stopping, [10.0, None, 11.0, None, 10.5, None, 12.0]) == 7


def test_select_by_bleu_needs_validation_bleu():
    with pytest.raises(TranslatorError, match="train.select_by='bleu'"):
        validate(tiny_run("/tmp/unused", "train.select_by=bleu", "train.validate_bleu_every=0"))
