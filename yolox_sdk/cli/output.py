"""How every command prints its result: tables, the summary panel, ``--json`` and ``--quiet``.

Commands build their result as data and hand it to a ``CommandOutput``, which renders it one of three ways:

- text (the default): rich tables and panels on a terminal; the same without colour in a file or pipe,
  never wrapped (a log keeps whole paths and commands, ``grep`` finds whole rows);
- ``--json``: exactly one JSON document on stdout, written when the command succeeds; everything else
  the command or a library prints while it works goes to stderr with the logs;
- ``--quiet``: only the essential result (a line or a table) and errors; logs below WARNING and the
  training progress are hidden.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

if TYPE_CHECKING:  # rich is imported when something is printed: `yolox-sdk --help` stays fast
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

F = TypeVar("F", bound=Callable[..., Any])

# Output that is not a terminal is not wrapped: rows and paths stay whole in logs and pipes.
UNWRAPPED_WIDTH = 1000
PROGRESS_LOGGER = "yolox_sdk.engine.progress"


def output_options(command: F) -> F:
    """``--json`` and ``--quiet``, passed to the command as ``as_json`` and ``quiet``."""
    command = click.option(
        "--quiet",
        "-q",
        is_flag=True,
        help="Print only the essential result and errors (no logs, no progress).",
    )(command)
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON document on stdout and nothing else there (logs go to stderr).",
    )(command)  # type: ignore[return-value]


def make_console(stream: TextIO | None = None) -> Console:
    """A rich console on ``stream`` (stdout): the terminal's width and colours on a terminal, else plain
    text that is never wrapped."""
    from rich.console import Console

    stream = stream or sys.stdout
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return Console(
        file=stream,
        width=None if terminal else UNWRAPPED_WIDTH,
        highlight=False,
        emoji=False,
        force_jupyter=False,
    )


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    numeric: Sequence[int] = (),
    title: str | None = None,
) -> Table:
    """The table every command prints: a bold header underlined once, no side borders, columns two
    spaces apart, the first cell of a row at the start of its line; ``numeric`` columns right-aligned."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    shown = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
        title=title,
        title_justify="left",
        title_style="bold",
    )
    for index, header in enumerate(headers):
        shown.add_column(header, justify="right" if index in numeric else "left", overflow="fold")
    for row in rows:
        shown.add_row(*(Text(cell_text(cell)) for cell in row))
    return shown


def cell_text(value: Any) -> str:
    """A table cell: ``-`` for nothing, ``n/a`` for NaN, floats to 4 decimals, the rest as text."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def panel(title: str, sections: Sequence[tuple[str | None, Sequence[str]]]) -> Panel:
    """The summary panel: sections of lines, each under an optional bold heading, in a rounded box as
    wide as its longest line."""
    from rich import box
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    parts: list[Any] = []
    for heading, lines in sections:
        if not lines:
            continue
        if parts:
            parts.append(Text(""))
        if heading:
            parts.append(Text(heading, style="bold"))
        parts.extend(Text(line, overflow="fold") for line in lines)
    return Panel.fit(
        Group(*parts), title=Text(title, style="bold"), title_align="left", box=box.ROUNDED, padding=(0, 1)
    )


def json_ready(value: Any) -> Any:
    """``value`` as strict JSON data: NaN and infinities become ``null``, paths and other objects text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


class CommandOutput:
    """Where a command's result goes; see the module docstring for the three modes.

    Attributes:
        as_json: ``--json``: ``json()`` sets the one document, written when the command succeeds.
        quiet: ``--quiet``: ``line()`` and ``print()`` are dropped, ``result()`` kept.
    """

    def __init__(self, as_json: bool, quiet: bool, stream: TextIO | None = None) -> None:
        self.as_json, self.quiet = as_json, quiet
        self.console = make_console(stream)
        self.document: Any = None

    @property
    def text(self) -> bool:
        """Whether the full text output is wanted (neither ``--json`` nor ``--quiet``)."""
        return not (self.as_json or self.quiet)

    def line(self, text: str = "", err: bool = False) -> None:
        """A line of the full text output (not under ``--quiet`` or ``--json``)."""
        if self.text:
            click.echo(text, err=err)

    def print(self, renderable: Any) -> None:
        """A table, panel or text of the full text output."""
        if self.text:
            self._render(renderable)

    def result(self, renderable: Any) -> None:
        """The essential result: printed in text and ``--quiet`` modes (``--json`` has its document)."""
        if not self.as_json:
            self._render(renderable)

    def _render(self, renderable: Any) -> None:
        """Text as it is (never read as rich markup); tables and panels by rich on a terminal, elsewhere
        the same text with the padding rich leaves at line ends removed."""
        if isinstance(renderable, str):
            click.echo(renderable)
            return
        if self.console.is_terminal:
            self.console.print(renderable)
            return
        with self.console.capture() as captured:
            self.console.print(renderable)
        click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))

    def json(self, document: Any) -> None:
        """Set the ``--json`` document (written once, when the command ends without an error)."""
        self.document = json_ready(document)


@contextmanager
def command_output(as_json: bool = False, quiet: bool = False) -> Iterator[CommandOutput]:
    """The ``CommandOutput`` of a command run inside this block.

    ``--quiet`` raises the log level to WARNING (unless ``--verbose``) and hides the training progress.
    ``--json`` sends whatever is printed to stdout meanwhile (by the command, a library, a native
    extension writing to file descriptor 1) to stderr, and writes the document to stdout at the end.
    """
    root = logging.getLogger()
    progress = logging.getLogger(PROGRESS_LOGGER)
    levels = root.level, progress.level
    if quiet and not _verbose():
        root.setLevel(logging.WARNING)
        progress.setLevel(logging.WARNING)
    stdout = sys.stdout
    output = CommandOutput(as_json, quiet, stdout)
    try:
        if as_json:
            with _stdout_to_stderr():
                yield output
            if output.document is not None:
                stdout.write(json.dumps(output.document, indent=2, allow_nan=False) + "\n")
                stdout.flush()
        else:
            yield output
    finally:
        root.setLevel(levels[0])
        progress.setLevel(levels[1])


def _verbose() -> bool:
    context = click.get_current_context(silent=True)
    return bool(context and context.find_root().params.get("verbose"))


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Python's ``sys.stdout`` and, when it is the process's real stdout, file descriptor 1 too, to stderr."""
    try:
        stderr_fd = sys.stderr.fileno() if sys.stdout.fileno() == 1 else None
    except (AttributeError, ValueError, OSError):  # a stand-in stream (CliRunner, a notebook)
        stderr_fd = None
    saved = None
    if stderr_fd is not None:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(stderr_fd, 1)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            sys.stderr.flush()
            os.dup2(saved, 1)
            os.close(saved)


# ----- evaluations (``eval`` and ``run``) ---------------------------------------------------------------

# The rows of the metrics table: (row, all, small, medium, large), as EvalResult.metrics names them.
METRIC_ROWS = (
    ("mAP", "mAP", "mAP_small", "mAP_medium", "mAP_large"),
    ("mAP50", "mAP50", None, None, None),
    ("mAP75", "mAP75", None, None, None),
    ("AR1", "AR1", None, None, None),
    ("AR10", "AR10", None, None, None),
    ("AR100", "AR100", "AR_small", "AR_medium", "AR_large"),
)


def _score(value: float | None) -> str:
    return "" if value is None else "n/a" if math.isnan(value) else f"{value:.3f}"


def per_class_table(result: Any) -> Table:
    """An ``EvalResult``'s per-class AP@[.5:.95] and AP50 with the ground-truth box counts."""
    rows = [(row.class_name, row.num_gt, _score(row.AP), _score(row.AP50)) for row in result.per_class]
    return table(("class", "gt boxes", "AP", "AP50"), rows, numeric=(1, 2, 3))


def metrics_table(result: Any) -> Table:
    """An ``EvalResult``'s COCO metrics (all areas, then small, medium, large) and metric plugins' values."""
    metrics = result.metrics
    rows = [
        (name, *(_score(metrics.get(key)) if key else "" for key in keys))
        for name, *keys in METRIC_ROWS
        if keys[0] in metrics
    ]
    known = {key for _, *keys in METRIC_ROWS for key in keys if key}
    rows += [(name, _score(value), "", "", "") for name, value in metrics.items() if name not in known]
    return table(("metric", "all", "small", "medium", "large"), rows, numeric=(1, 2, 3, 4))


def errors_table(errors: Any) -> Table:
    """The TIDE-style error counts and the AP50 each type would gain if fixed."""
    rows = [
        (kind, count, "n/a" if math.isnan(errors.gain[kind]) else f"{errors.gain[kind]:+.3f}")
        for kind, count in errors.counts().items()
    ]
    title = f"Errors (TIDE-style, foreground IoU 0.5, background IoU 0.1; AP50 {errors.ap50:.3f})"
    return table(("type", "count", "AP50 gain if fixed"), rows, numeric=(1, 2), title=title)


def recommended_line(report: Any, fallback_conf: float) -> str:
    """The recommended confidence threshold of an ``EvaluationReport``, with its F1, precision and recall."""
    best = report.recommended
    if best is None:
        return f"Recommended confidence threshold: none (no predictions); predict --conf auto uses {fallback_conf}."
    return (
        f"Recommended confidence threshold: {best.conf:.3f} (max F1 {best.f1:.3f} at IoU 0.5: precision "
        f"{best.precision:.3f}, recall {best.recall:.3f})"
    )


def headline(metrics: Mapping[str, float]) -> str:
    """``mAP 0.4321, mAP50 0.6543``: the two numbers a script or a person wants first."""
    return ", ".join(f"{name} {cell_text(metrics.get(name))}" for name in ("mAP", "mAP50"))
