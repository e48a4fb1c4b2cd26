"""The before/after table of ``yolox-sdk prune`` (plain text, one column per model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolox_sdk.optimization.figures import ModelFigures

if TYPE_CHECKING:
    from yolox_sdk.optimization.job import PruneResult


def _cell(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return ""
    return f" ({value / reference:.2f}x)"


def figures_rows(columns: list[tuple[str, ModelFigures]]) -> list[list[str]]:
    """Rows (label first) comparing each model to the first column."""
    reference = columns[0][1]
    rows = [["", *[name for name, _ in columns]]]
    rows.append(
        ["parameters"] + [f"{f.params / 1e6:.3f} M{_ratio(f.params, reference.params)}" for _, f in columns]
    )
    rows.append(
        [f"GMACs at {reference.input_size[0]}x{reference.input_size[1]}"]
        + [f"{f.macs / 1e9:.3f}{_ratio(f.macs, reference.macs)}" for _, f in columns]
    )
    rows.append(
        [f"CPU ms, batch 1, {reference.threads} threads (median)" if reference.threads else "CPU ms, batch 1"]
        + [_cell(f.latency_ms, "{:.1f}") + _ratio(f.latency_ms, reference.latency_ms) for _, f in columns]
    )
    rows.append(["val mAP50:95"] + [_cell(f.map, "{:.4f}") for _, f in columns])
    rows.append(["val mAP50"] + [_cell(f.map50, "{:.4f}") for _, f in columns])
    return rows


def render(rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def figures_table(result: PruneResult) -> str:
    """The table for one ``prune`` run: unpruned, pruned, and recovered when finetuned."""
    columns = [("unpruned", result.before), (f"pruned {result.ratio:.0%}", result.after)]
    if result.recovered is not None:
        columns.append(("after recovery", result.recovered))
    return render(figures_rows(columns))
