"""Helpers shared by every CLI command: error handling and logging set-up."""

from __future__ import annotations

import logging
import sys
import traceback
import warnings
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from yolox_sdk.errors import YoloxSdkError

F = TypeVar("F", bound=Callable[..., Any])


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


def handle_errors(function: F) -> F:
    """Turn ``YoloxSdkError`` into a clear message and the right exit code; hide tracebacks unless verbose."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = bool(click.get_current_context().find_root().params.get("verbose"))
        try:
            return function(*args, **kwargs)
        except click.exceptions.ClickException:
            raise
        except YoloxSdkError as error:
            if verbose:
                traceback.print_exc()
            click.secho(f"Error: {error}", fg="red", err=True)
            sys.exit(error.exit_code)
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
