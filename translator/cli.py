"""What the scripts share: user errors become one line on stderr and a non-zero exit."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable

from translator.native_logs import filter_native_stderr, verbose

if not verbose():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
filter_native_stderr()  # what TF_CPP_MIN_LOG_LEVEL does not silence (before TensorFlow loads)

from translator.errors import TranslatorError  # noqa: E402

TEXT_VARIABLE = "TRANSLATOR_TEXT"  # how `make translate TEXT=...` hands a sentence to the config


def run(function: Callable, *args, **kwargs):
    """Call a library entry point; report a TranslatorError as `error: ...` and exit 2. Ctrl-C
    and a reader that closed our output pipe (`| head`) end the command quietly, without a
    traceback: exit 130 and 141, as a shell reports SIGINT and SIGPIPE."""
    try:
        return function(*args, **kwargs)
    except TranslatorError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        silence_stdout()
        sys.exit(141)


def silence_stdout() -> None:
    """Point standard output at /dev/null, so that flushing it at exit does not fail again on
    the closed pipe (the recipe of Python's `signal` documentation)."""
    with contextlib.suppress(OSError, ValueError):  # not a real file (a test's capture)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def command(config_name: str):
    """`@hydra.main` for `configs/<config_name>.yaml`, with the command line's overrides checked
    first: a bad key or value is one `error:` line and exit code 2, where Hydra's own report
    spans several lines and exits with 1."""
    import hydra

    from translator.config import CONFIG_DIR

    def decorate(function: Callable) -> Callable:
        hydra_main = hydra.main(
            config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3"
        )(function)

        @functools.wraps(function)
        def main():
            arguments, text = lift_text(config_name, sys.argv[1:])
            if text is not None:
                os.environ[TEXT_VARIABLE] = text
                sys.argv[1:] = arguments
            check_overrides(config_name, arguments)
            return hydra_main()

        return main

    return decorate


def lift_text(config_name: str, arguments: list[str]) -> tuple[list[str], str | None]:
    """(the other arguments, the sentence) when the command's config reads `text` from
    TRANSLATOR_TEXT and an argument is `text=...`: the sentence is the rest of that argument, as
    the shell gave it (any characters: spaces, non-ASCII, commas, quotes, '='), where Hydra's
    override lexer would refuse most of them. Quotes around all of it are removed, so Hydra's
    quoted form `text="'Tengo hambre.'"` means what it did. Several: the last one counts."""
    if not reads_text_from_environment(config_name):
        return arguments, None
    others, text = [], None
    for argument in arguments:
        if argument.startswith("text="):
            text = unquote(argument.removeprefix("text="))
        else:
            others.append(argument)
    return others, text


def reads_text_from_environment(config_name: str) -> bool:
    from omegaconf import OmegaConf

    from translator.config import CONFIG_DIR

    config = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml"))
    return TEXT_VARIABLE in str(config.get("text", ""))


def unquote(value: str) -> str:
    quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
    return value[1:-1] if quoted else value


def check_overrides(config_name: str, arguments: list[str]) -> None:
    """Compose the config with `arguments`' overrides (Hydra's own flags and `hydra.*` keys
    aside); on failure print its reason as one line and exit 2."""
    from translator.config import load_config

    overrides = [a for a in arguments if not a.startswith(("-", "hydra."))]
    try:
        load_config(config_name, overrides)
    except Exception as error:  # Hydra's and OmegaConf's composition errors
        print(f"error: {override_error(error)}", file=sys.stderr)
        sys.exit(2)


def override_error(error: BaseException) -> str:
    """Hydra's error and its cause, first lines only: "Error merging override train.epochs=abc:
    Value 'abc' of type 'str' could not be converted to Integer"."""
    lines = [str(e).strip().splitlines()[0] for e in (error, error.__cause__) if e and str(e)]
    return ": ".join(line.rstrip(".") for line in lines) or type(error).__name__
