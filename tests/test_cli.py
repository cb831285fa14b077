"""What the scripts share (translator/cli.py): one-line errors, quiet ends, `text=` as given."""

import os
import subprocess
import sys

import pytest

from translator.cli import lift_text, run
from translator.config import PROJECT_ROOT
from translator.errors import TranslatorError


def raising(error: BaseException):
    def function():
        raise error

    return function


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (TranslatorError("no such file"), 2, "error: no such file\n"),
        (KeyboardInterrupt(), 130, ""),  # Ctrl-C: quietly, as a shell reports SIGINT
        (BrokenPipeError(), 141, ""),  # `| head` closed the pipe: quietly, as SIGPIPE
    ],
)
def test_run_ends_errors_with_one_line_and_interruptions_quietly(capsys, error, code, message):
    with pytest.raises(SystemExit) as exit_:
        run(raising(error))
    assert exit_.value.code == code
    assert capsys.readouterr().err == message


SENTENCE = "Schöne Grüße, Welt: \"a=b\" 'c' {d} [e] $f ${g} \\h"


@pytest.mark.parametrize(
    ("argument", "text"),
    [
        (f"text={SENTENCE}", SENTENCE),  # as the shell gives it: one argument, any characters
        ("text='Tengo hambre.'", "Tengo hambre."),  # Hydra's quoted form still means the same
        ('text="Tengo hambre."', "Tengo hambre."),
        ("text=", ""),
    ],
)
def test_text_is_taken_out_of_the_overrides_as_given(argument, text):
    arguments = ["run_dir=checkpoints/run", argument, "decode=greedy"]
    assert lift_text("translate", arguments) == (["run_dir=checkpoints/run", "decode=greedy"], text)
    assert lift_text("plot", [argument]) == ([], text)


def test_text_is_left_to_hydra_where_the_config_has_no_text():
    assert lift_text("translate", ["decode=greedy"]) == (["decode=greedy"], None)
    assert lift_text("train", ["text=Hallo"]) == (["text=Hallo"], None)  # Hydra refuses it


@pytest.mark.slow
def test_translate_script_takes_any_text_directly(trained_run):
    from translator.inference.translator import Translator

    sentence = "Zwei Männer, ein Hund: „Grüße“ = 'hallo'"
    done = subprocess.run(
        [sys.executable, PROJECT_ROOT / "scripts" / "translate.py",
         f"run_dir={trained_run[0].run_dir}", f"text={sentence}"],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TRANSLATOR_TEXT": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    expected = Translator.from_run_dir(trained_run[0].run_dir).translate([sentence])
    assert done.stdout.splitlines() == expected
