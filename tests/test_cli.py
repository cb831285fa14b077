"""What the scripts share (translator/cli.py): one-line errors and quiet ends."""

import pytest

from translator.cli import run
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
