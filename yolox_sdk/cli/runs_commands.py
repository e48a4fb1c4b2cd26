"""``yolox-sdk runs``: list the runs of an output folder and compare two of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from yolox_sdk.cli.common import handle_errors
from yolox_sdk.cli.output import command_output, output_options, table

if TYPE_CHECKING:
    from yolox_sdk.engine.runs import RunComparison, RunSummary

HASH_CHARS = 12


@click.group()
def runs() -> None:
    """Inspect and compare training runs (their run directories)."""


@runs.command("compare")
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as one JSON document.")
@handle_errors
def compare(run_a: Path, run_b: Path, as_json: bool) -> None:
    """Show how RUN_B differs from RUN_A: config keys, metrics (B - A) and lineage."""
    from yolox_sdk.engine.runs import compare_runs, read_run

    with command_output(as_json) as out:
        comparison = compare_runs(read_run(run_a), read_run(run_b))
        for section in comparison_sections(comparison):
            out.print(section)
        out.json(comparison.to_dict())


@runs.command("list")
@click.argument("output_dir", type=click.Path(path_type=Path), default="runs")
@output_options
@handle_errors
def list_command(output_dir: Path, as_json: bool, quiet: bool) -> None:
    """List the runs in OUTPUT_DIR (default: runs): epochs, best val/mAP and config hash.

    --json prints a list with each run's name, path, epochs, best_mAP and config_hash; --quiet prints the
    run directories only, one a line.
    """
    from yolox_sdk.engine.runs import MAP_METRIC, list_runs

    with command_output(as_json, quiet) as out:
        found = list_runs(output_dir)
        out.json(
            [
                {
                    "name": r.name,
                    "path": str(r.path),
                    "epochs": r.epochs,
                    "best_mAP": r.best(MAP_METRIC),
                    "config_hash": r.config_hash,
                }
                for r in found
            ]
        )
        if quiet:
            for r in found:
                out.result(str(r.path))
        elif not found:
            out.line(f"No runs in {output_dir}.")
        else:
            rows = [(r.name, r.epochs, _number(r.best(MAP_METRIC)), r.config_hash) for r in found]
            out.print(table(("run", "epochs", "best mAP", "config"), rows, numeric=(1, 2)))


def comparison_sections(comparison: RunComparison) -> list[Any]:
    """What ``runs compare`` prints: run headers, config diff, metric table, lineage (text and tables)."""
    return [
        f"A: {_run_line(comparison.a)}\nB: {_run_line(comparison.b)}\n",
        *_config_section(comparison),
        *_metrics_section(comparison),
        _lineage_section(comparison),
    ]


def _run_line(run: RunSummary) -> str:
    return f"{run.path} ({run.epochs} epochs, config {run.config_hash})"


def _config_section(comparison: RunComparison) -> list[Any]:
    if not comparison.config_diff:
        return ["Config: identical.\n"]
    rows = [(key, _value(a), _value(b)) for key, a, b in comparison.config_diff]
    return [f"Config differences ({len(comparison.config_diff)}):", table(("key", "A", "B"), rows), ""]


def _metrics_section(comparison: RunComparison) -> list[Any]:
    rows = [
        (
            m.name,
            _number(m.a_final),
            _number(m.b_final),
            _number(m.final_delta, signed=True),
            _number(m.a_best),
            _number(m.b_best),
            _number(m.best_delta, signed=True),
        )
        for m in comparison.metrics
    ]
    a, b = comparison.a.epochs, comparison.b.epochs
    rows.append(("epochs", str(a), str(b), f"{b - a:+d}", "", "", ""))
    headers = ("metric", "A final", "B final", "delta", "A best", "B best", "delta")
    return [
        "Metrics (delta = B - A; best = highest, lowest for losses):",
        table(headers, rows, numeric=range(1, 7)),
        "",
    ]


def _lineage_section(comparison: RunComparison) -> Any:
    rows = []
    for item in comparison.lineage:
        same = {True: "yes", False: "NO", None: "unknown"}[item.same]
        rows.append((item.name, _lineage_value(item.a), _lineage_value(item.b), same))
    return table(("lineage", "A", "B", "same"), rows)


def _lineage_value(value: Any) -> str:
    from yolox_sdk.engine.runs import ABSENT

    if value is ABSENT:
        return "(no lineage.json)"
    if value is None:
        return "none"
    text = str(value)
    return text[:HASH_CHARS] if len(text) == 64 else text


def _value(value: Any) -> str:
    from yolox_sdk.engine.runs import ABSENT

    if value is ABSENT:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"
