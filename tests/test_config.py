"""The configs: every entry of every group composes, and the schemas refuse bad values by name."""

import itertools
import os
import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from tests.conftest import compose
from translator.config import CONFIG_DIR, PROJECT_ROOT, load_config, validate, validate_serve
from translator.errors import TranslatorError
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
    base = [] if group == "experiment" else ["~experiment"]  # the entry itself, not its mix
    cfg = compose(*base, f"{group}={entry}")
    if (group, entry) in NEEDS_VALUES:
        assert OmegaConf.is_missing(cfg.data, "source")
        return
    # Everything else resolves completely (hydra's own node aside).
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved["run_dir"].endswith(resolved["run_name"])
    check_settings(cfg)  # the trainer would accept it (schedule, shared embeddings)


def test_the_default_experiment_reads_the_corpus_shipped_in_the_project():
    cfg = compose()
    folder = PROJECT_ROOT / "data" / "tatoeba_es_en"
    assert (cfg.data.source, cfg.data.target, cfg.data.path) == ("es", "en", str(folder))
    shipped = {p.name for p in folder.glob("*.gz")}
    splits, langs = ("train", "validation", "test"), ("es", "en")
    assert shipped == {f"{split}.{lang}.gz" for split in splits for lang in langs}


def test_multi30k_is_read_from_the_shared_data_folder():
    assert compose("data=multi30k_en_de").data.path.endswith("/shared/data/multi30k")


@pytest.mark.parametrize("experiment", ["tatoeba_es_en", "multi30k_en_de", "multi30k_de_en"])
def test_every_experiment_names_the_decode_settings_its_scores_use(experiment):
    decode = compose(f"experiment={experiment}").decode
    assert (decode.strategy, decode.beam_size, decode.length_penalty) == ("beam", 5, 0.6)


def test_the_low_resource_runs_chain_each_from_the_run_before():
    """docs/adaptation.md's runs 1 -> 3 -> 4: each later run starts from the one before, whose
    model and vocabulary settings it shares (what train.init_from checks), within 20 minutes."""
    from translator.training.adapt import differences

    chain = [compose(f"experiment={name}")
             for name in ("lowres_de_en", "lowres_de_en_bt", "lowres_de_en_finetune")]  # fmt: skip
    for before, after in itertools.pairwise(chain):
        assert after.train.init_from == before.run_dir
        assert differences(before, after) == []
    assert chain[0].train.init_from is None
    reverse = compose("experiment=lowres_en_de")
    assert [run.train.max_minutes for run in [*chain, reverse]] == [19, 19, 8, 19]


def test_the_long_input_experiment_is_the_default_one_joining_pairs_for_1500_updates():
    """experiment=tatoeba_es_en_long_inputs is the recipe docs/translation.md measured: the
    default experiment with these overrides, its decay ending at update 1,500, joining from 450."""
    import tensorflow as tf

    from translator.training.plan import StepPlan
    from translator.training.schedules import build_schedule

    long = compose("experiment=tatoeba_es_en_long_inputs")
    measured = compose("experiment=tatoeba_es_en", "run_name=tatoeba_es_en_long_inputs",
                       "train.epochs=10", "train.max_minutes=null", "train.decay_steps=1500",
                       "data.concat=0.5", "data.concat_most=5", "data.concat_from=0.3")  # fmt: skip
    assert OmegaConf.to_container(long) == OmegaConf.to_container(measured)
    per_epoch = long.train.steps_per_epoch
    schedule = build_schedule(long.model.d_model, long.train, long.train.epochs * per_epoch)
    start = tf.Variable(0, dtype=tf.int64)
    plan = StepPlan(long, per_epoch, schedule, concat_start=start)
    settings = plan.update(long.train.epochs, step=0)
    assert settings == {"predicted_steps": 1500, "concat_steps": 450}
    assert float(schedule(1500)) == 0.0 < float(schedule(1499))


@pytest.mark.parametrize("config_name", ["translate", "evaluate", "plot", "export"])
def test_inference_commands_default_to_the_latest_run_and_its_decode_settings(config_name):
    cfg = load_config(config_name)
    assert cfg.run_dir is None and cfg.weights == "auto"
    assert set(OmegaConf.to_container(cfg.decode).values()) == {None}  # the run's own


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.warmup_steps=soon", "train.warmup_steps"),
        ("train.consistency=yes", "train.consistency"),
        ("data.bidirectional_steps=1.5", "data.bidirectional_steps"),
        ("tokenizer.sample_nbest_size=some", "tokenizer.sample_nbest_size"),
        ("model.dropout=half", "model.dropout"),
        ("train.unknown_setting=1", "train.unknown_setting"),
    ],
)
def test_values_of_the_wrong_type_or_unknown_keys_fail_at_composition(override, key):
    with pytest.raises(ConfigCompositionException, match=key.replace(".", r"\.")):
        compose(override)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.consistency=-1", "train.consistency=-1.0: expected a number >= 0"),
        ("data.source_dropout=1.0", r"data.source_dropout=1.0: expected a number in \[0, 1\)"),
        ("data.source_dropout=-0.1", r"data.source_dropout=-0.1: expected a number in \[0, 1\)"),
        ("data.bidirectional_steps=-1", "data.bidirectional_steps=-1: expected a number >= 0"),
        ("tokenizer.sample_alpha=0", "tokenizer.sample_alpha=0.0: expected a number above 0"),
        ("model.num_heads=5", "model.num_heads=5: expected a divisor of d_model=192"),
        ("train.precision=fp8", "train.precision='fp8': expected auto, float32, mixed_float16"),
        ("train.decay=cosine", "train.decay='cosine': expected inverse_sqrt or linear"),
        ("train.max_minutes=null", r"decay_steps=auto: .* needs train.max_minutes"),
        ("train.decay_steps=100", "train.decay_steps=100: decay=linear needs the step .* above"),
        ("decode.n_best=6", "decode.n_best=6: expected at most decode.beam_size=5"),
        (
            "data.bidirectional_fraction=1.0",
            r"bidirectional_fraction=1.0: expected a number in \[0, 1\)",
        ),
        ("train.warmup_fraction=0", r"train.warmup_fraction=0.0: expected a number in \(0, 1\)"),
        (
            "train.average_fraction=0.5",
            "train.average_fraction=0.5: expected null when train.average_last",
        ),
    ],
)
def test_values_out_of_range_are_refused_naming_the_key(override, message):
    cfg = compose(override, "tokenizer.sample_nbest_size=64")
    with pytest.raises(TranslatorError, match=message) as error:
        validate(cfg)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("max_batch_size=0", "max_batch_size=0: expected a number >= 1"),
        ("max_sentences=2.5", "max_sentences: Value '2.5' of type 'float' could not be converted"),
        ("max_chars=abc", "max_chars: Value 'abc' of type 'str' could not be converted"),
        ("max_wait_ms=-1", "max_wait_ms=-1.0: expected a number >= 0"),
        ("request_timeout_s=0", "request_timeout_s=0.0: expected a number > 0"),
        ("port=70000", r"port=70000: expected a number in \[0, 65535\]"),
        ("log_level=loud", "log_level='loud': expected critical, error, warning, info, debug"),
        ("host=null", "host: Incompatible value 'None'"),
    ],
)
def test_serve_limits_are_checked_naming_the_key(override, message):
    validate_serve(load_config("serve"))  # the defaults pass
    with pytest.raises(TranslatorError, match=message) as error:
        validate_serve(load_config("serve", [override]))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["tokenizer=sentencepiece"], "share_embeddings=true needs one vocabulary"),
        (["tokenizer=sentencepiece", "model.share_embeddings=false",
          "data.bidirectional_steps=10"], r"data.bidirectional_fraction\) needs one vocabulary"),
        (["tokenizer=sentencepiece", "model.share_embeddings=false",
          "data.bidirectional_fraction=0.2"], "needs one vocabulary for both languages"),
    ],
)  # fmt: skip
def test_settings_that_span_groups_are_checked_together(overrides, message):
    with pytest.raises(TranslatorError, match=message):
        check_settings(compose(*overrides))


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["train.epochs=abc"], "Error merging override train.epochs=abc: Value 'abc'"),
        (["nosuchkey=1"], "Could not override 'nosuchkey': Key 'nosuchkey' is not in struct"),
        (["experiment=nope"], "Could not find 'experiment/nope'"),
        (["model.dropout=[1,2]"], "model.dropout"),
    ],
)
def test_a_bad_override_on_the_command_line_is_one_error_line(arguments, named):
    done = subprocess.run(
        [sys.executable, PROJECT_ROOT / "scripts" / "train.py", *arguments],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert named in done.stderr
