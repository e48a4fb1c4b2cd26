"""Helpers shared by every CLI command: error handling and logging set-up."""

from __future__ import annotations

import errno
import logging
import math
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from yolox_sdk.errors import ConfigError, YoloxSdkError

F = TypeVar("F", bound=Callable[..., Any])


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf`` (every comparison with NaN is false, so a
    plain range lets it through to thresholds and split fractions)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


FORMAT_OPTION_HELP = (
    "Option of the dataset format, as KEY=VALUE (repeatable), e.g. --format-option image_dir=photos; the "
    "same keys as data.format_options ('yolox-sdk plugins --verbose' lists each format's)."
)


def format_option_flag(command: F) -> F:
    """``--format-option KEY=VALUE`` (repeatable): what ``data.format_options`` is in a config."""
    return click.option(
        "--format-option",
        "format_options",
        multiple=True,
        metavar="KEY=VALUE",
        help=FORMAT_OPTION_HELP,
    )(command)  # type: ignore[return-value]


def parse_format_options(texts: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``("image_dir=photos", "class_names=[a,b]")`` as ``{"image_dir": "photos", ...}``.

    Values are parsed as YAML by the same safe reader as config overrides; the format's options class
    checks keys and types when the format is built (a typo gets "did you mean").

    Raises:
        ConfigError: a text is not ``KEY=VALUE`` with a plain key, or a key is given twice.
    """
    from yolox_sdk.config.loader import parse_override

    options: dict[str, Any] = {}
    for text in texts:
        try:
            keys, value = parse_override(text)
        except ConfigError as error:
            raise ConfigError(str(error).replace("Bad override", "Bad --format-option", 1)) from None
        if len(keys) != 1:
            raise ConfigError(
                f"Bad --format-option '{text}': expected KEY=VALUE with a plain key, e.g. image_dir=photos "
                "(the key is a field of the format's options, without 'data.format_options.')."
            )
        if keys[0] in options:
            raise ConfigError(f"--format-option {keys[0]} is given twice; give each option once.")
        options[keys[0]] = value
    return options


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s" if verbose else "%(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("PIL", "matplotlib", "urllib3", "onnxscript", "onnx_ir"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The yolox package calls the deprecated torch.cuda.amp.autocast on every step; not actionable for users.
    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast.*", category=FutureWarning)


# What to do about the OS errors a user can meet, by errno; anything else gets the OS's own words.
_OS_ERROR_FIXES = {
    errno.ENOSPC: "Free space on that disk, or write elsewhere (monitoring.output_dir, --out)",
    errno.EDQUOT: "Your disk quota is used up: free space, or write elsewhere (monitoring.output_dir, --out)",
    errno.EACCES: "Fix the permissions, or choose a folder you can write to (monitoring.output_dir, --out)",
    errno.EPERM: "Fix the permissions, or choose a folder you can write to (monitoring.output_dir, --out)",
    errno.EROFS: "That file system is read-only: write elsewhere (monitoring.output_dir, --out)",
    errno.EMFILE: "Too many open files: raise the limit (ulimit -n) or lower data.num_workers",
}


def describe_os_error(error: OSError) -> str:
    """One paragraph for an OS error: what failed, on which path, how to fix it, and that saved files are kept.

    Checkpoints are written to a temporary file and renamed only when complete, so a full disk or a
    permission error never damages what was saved before; the message says so and how to continue.
    """
    what = error.strerror or str(error)
    name = str(error.filename) if error.filename else ""
    where = f" ({name if len(name) <= 300 else name[:150] + ' ... ' + name[-100:]})" if name else ""
    fix = _OS_ERROR_FIXES.get(error.errno or 0, "Check the path and try again")
    text = f"{what}{where}. {fix}. Files saved before this error (checkpoints, earlier outputs) are intact"
    from yolox_sdk.engine.run_dir import CONFIG_FILENAME  # on the error path only: keeps start-up light

    run_dir = Path(str(error.filename)).parent if error.filename else None
    if run_dir is not None and (run_dir / CONFIG_FILENAME).is_file():
        return (
            f"{text}; continue the run with `yolox-sdk train {run_dir / CONFIG_FILENAME} --resume {run_dir}`."
        )
    return f"{text}."


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop (evaluation, export, predict, data commands), raised like Ctrl-C.

    Python's default SIGTERM ends the process on the spot: no message, no ``finally`` blocks, so a lock or
    a temporary file could stay behind. As an exception it unwinds like Ctrl-C and is reported. Training
    installs its own handlers (``engine.interruption``: stop at a step, save, resume command) and puts
    this one back when it ends.
    """


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may install handlers (the Python API in a worker thread)
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def handle_errors(function: F) -> F:
    """Turn ``YoloxSdkError``, OS errors and signals into a clear message and the right exit code; hide
    tracebacks unless verbose."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = bool(click.get_current_context().find_root().params.get("verbose"))
        try:
            with _sigterm_as_exception():
                return function(*args, **kwargs)
        except click.exceptions.ClickException:
            raise
        except YoloxSdkError as error:
            if verbose:
                traceback.print_exc()
            click.secho(f"Error: {error}", fg="red", err=True)
            sys.exit(error.exit_code)
        except OSError as error:
            if verbose:
                traceback.print_exc()
            click.secho(f"Error: {describe_os_error(error)}", fg="red", err=True)
            sys.exit(1)
        except Terminated:
            click.secho(
                "Terminated (SIGTERM) before the command finished; files it had written are kept.",
                fg="yellow",
                err=True,
            )
            sys.exit(128 + signal.SIGTERM)
        except KeyboardInterrupt:
            click.secho("Interrupted.", fg="yellow", err=True)
            sys.exit(130)
        except Exception as error:  # noqa: BLE001 - last line of defence for the user
            if verbose:
                traceback.print_exc()
            click.secho(
                f"Unexpected error: {type(error).__name__}: {error}\n"
                "This is a bug in yolox-sdk or a plugin; run again with --verbose for the traceback and report it.",
                fg="red",
                err=True,
            )
            sys.exit(1)

    return wrapper  # type: ignore[return-value]
