"""``yolox-sdk data``: inspect datasets. ``validate``, ``stats``, ``split`` and ``convert`` come with issue #4."""

from __future__ import annotations

import sys

import click

from yolox_sdk.cli.common import handle_errors


@click.group()
def data() -> None:
    """Inspect and prepare datasets."""


@data.command("info")
@click.argument("path")
@click.option("--split", default=None, help="Split to read (VOC ImageSets name, YOLO data.yaml key).")
@click.option("--format", "format_name", default="auto", show_default=True, help="Dataset format plugin.")
@handle_errors
def info(path: str, split: str | None, format_name: str) -> None:
    """Read the dataset at PATH and print its classes, counts and what the reader fixed."""
    from yolox_sdk.data.formats import load_dataset

    dataset = load_dataset(path, split=split, format=format_name)
    click.echo(f"{dataset.source} ({dataset.format}): {len(dataset)} images, {dataset.num_boxes()} boxes")
    counts = [0] * dataset.num_classes
    for record in dataset.records:
        for label in record.labels:
            counts[int(label)] += 1
    for index, name in enumerate(dataset.class_names):
        click.echo(f"  {index:>3} {name:<24} {counts[index]:>7} boxes")
    for line in dataset.report.lines():
        click.secho(f"  note: {line}", fg="yellow")


def _not_built(name: str) -> None:
    @data.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def command() -> None:
        click.secho(
            f"`yolox-sdk data {name}` is not built yet (tracked in issue #4). Use `yolox-sdk data info PATH` "
            "to read a dataset and see what its reader fixed.",
            fg="red",
            err=True,
        )
        sys.exit(1)

    command.__doc__ = f"Not built yet: {name} (issue #4)."


for _name in ("validate", "stats", "split", "convert"):
    _not_built(_name)
