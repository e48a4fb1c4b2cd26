"""``yolox-sdk data``: inspect and prepare datasets (info, validate, stats, split, convert, audit).

No command ever writes into the dataset it reads: outputs go to the folder named on the command line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from yolox_sdk.cli.common import FiniteFloatRange, format_option_flag, handle_errors, parse_format_options
from yolox_sdk.data.near_duplicates import NEAR_DUPLICATE_DISTANCE

SPLIT_HELP = (
    "Split to read: a name (VOC ImageSets name, YOLO data.yaml key, COCO file suffix) or a split list file "
    "of image paths (ends in .txt or holds a '/'; what `data split` writes)."
)
FORMAT_HELP = "Dataset format plugin of the input (auto-detected by default)."


def dataset_arguments(command: Callable[..., Any]) -> Callable[..., Any]:
    """PATH, --split, --format and --format-option: how the commands that read one dataset name it."""
    command = format_option_flag(command)
    command = click.option("--format", "format_name", default="auto", show_default=True, help=FORMAT_HELP)(
        command
    )
    command = click.option("--split", default=None, help=SPLIT_HELP)(command)
    return click.argument("path")(command)


@click.group()
def data() -> None:
    """Inspect and prepare datasets."""


@data.command("info")
@dataset_arguments
@handle_errors
def info(path: str, split: str | None, format_name: str, format_options: tuple[str, ...]) -> None:
    """Read the dataset at PATH and print its classes, counts and what the reader fixed."""
    from yolox_sdk.data.formats import load_dataset

    options = parse_format_options(format_options)
    dataset = load_dataset(path, split=split, format=format_name, options=options)
    click.echo(f"{dataset.source} ({dataset.format}): {len(dataset)} images, {dataset.num_boxes()} boxes")
    counts = [0] * dataset.num_classes
    for record in dataset.records:
        for label in record.labels:
            counts[int(label)] += 1
    for index, name in enumerate(dataset.class_names):
        click.echo(f"  {index:>3} {name:<24} {counts[index]:>7} boxes")
    for line in dataset.report.lines():
        click.secho(f"  note: {line}", fg="yellow")


@data.command("validate")
@dataset_arguments
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the report as JSON here.",
)
@click.option(
    "--fix",
    "fix_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a cleaned copy in the same format into this (empty) folder; the input is never modified.",
)
@click.option(
    "--force", is_flag=True, help="With --fix, replace an earlier dataset in that folder (deleted first)."
)
@click.option(
    "--workers", type=click.IntRange(1, 256), default=None, help="Threads decoding images (default: up to 8)."
)
@click.option(
    "--splits",
    "splits_text",
    default=None,
    metavar="A,B,...",
    help="Splits to compare for shared and near-duplicate images: split names or split list files, "
    "comma-separated (default without --split: whichever of train, val, test the dataset has; 'none' skips).",
)
@click.option(
    "--near-duplicate-distance",
    type=click.IntRange(0, 64),
    default=NEAR_DUPLICATE_DISTANCE,
    show_default=True,
    help="Images in different splits whose 128-bit difference hashes differ in at most this many bits are "
    "reported as near-duplicates (0: byte-identical only).",
)
@handle_errors
def validate(
    path: str,
    split: str | None,
    format_name: str,
    format_options: tuple[str, ...],
    json_path: Path | None,
    fix_dir: Path | None,
    force: bool,
    workers: int | None,
    splits_text: str | None,
    near_duplicate_distance: int,
) -> None:
    """Decode every image and check every label of the dataset at PATH, and compare its splits: an image
    in two splits is an error, near-duplicates in two splits a warning.

    Exits with 1 when errors are found (images that cannot be decoded, labels that cannot be used),
    2 when the annotations cannot be read at all as given (then only the image files were checked: fix the
    format, split or --format-option the report names), 0 when there are only warnings or nothing.
    """
    from yolox_sdk.data.conversion import check_dataset_folder
    from yolox_sdk.data.formats import resolve_dataset_path
    from yolox_sdk.data.validation import fix_dataset, validate_dataset

    changes: list[str] = []
    options = parse_format_options(format_options)
    if fix_dir is not None:
        replace = check_dataset_folder(fix_dir, resolve_dataset_path(path)[0], force)
        report, changes = fix_dataset(
            path, fix_dir, split=split, format=format_name, workers=workers, replace=replace, options=options
        )
    else:
        report = validate_dataset(
            path,
            split=split,
            format=format_name,
            workers=workers,
            options=options,
            splits=_split_names(splits_text),
            near_duplicate_distance=near_duplicate_distance,
        )
    click.echo(
        f"{report.source} ({report.format or 'unknown format'}): {report.images_checked} images checked"
    )
    if report.splits_compared:
        click.echo(f"Splits compared for shared images: {', '.join(report.splits_compared)}")
    click.echo(report.table())
    color = "red" if report.errors else ("yellow" if report.warnings else "green")
    click.secho(f"{report.errors} error(s), {report.warnings} warning(s)", fg=color)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
        click.echo(f"Report written to {json_path}")
    if fix_dir is not None:
        click.echo(f"Fixed copy written to {fix_dir}:")
        for change in changes or ["nothing needed fixing; the copy equals the input"]:
            click.echo(f"  - {change}")
    if not report.readable:
        sys.exit(2)
    if report.errors:
        sys.exit(1)


def _split_names(text: str | None) -> tuple[str, ...] | None:
    """``--splits``: ``None`` for the default, ``()`` for 'none', else the comma-separated entries."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if len(names) < 2:
        raise click.BadParameter(f"give at least two splits to compare, got {text!r}", param_hint="--splits")
    return names


@data.command("stats")
@dataset_arguments
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for stats.json and the PNG plots (class histogram, box sizes, sample grid).",
)
@handle_errors
def stats(
    path: str, split: str | None, format_name: str, format_options: tuple[str, ...], out_dir: Path | None
) -> None:
    """Print counts, box sizes and image sizes of the dataset at PATH; with --out, write JSON and plots."""
    from yolox_sdk.data.conversion import check_output_folder
    from yolox_sdk.data.formats import load_dataset, resolve_dataset_path
    from yolox_sdk.data.statistics import dataset_statistics, summary_lines, write_plots

    if out_dir is not None:
        check_output_folder(out_dir, resolve_dataset_path(path)[0], force=True)
    dataset = load_dataset(
        path, split=split, format=format_name, options=parse_format_options(format_options)
    )
    numbers = dataset_statistics(dataset)
    for line in summary_lines(numbers):
        click.echo(line)
    for line in dataset.report.lines():
        click.secho(f"note: {line}", fg="yellow")
    if out_dir is not None:
        written = write_plots(dataset, numbers, out_dir)
        (out_dir / "stats.json").write_text(json.dumps(numbers, indent=2), encoding="utf-8")
        click.echo(f"Wrote {out_dir / 'stats.json'} and {', '.join(p.name for p in written)}")


@data.command("split")
@click.argument("path")
@click.option("--val", type=FiniteFloatRange(0, 1, max_open=True), default=0.2, show_default=True)
@click.option("--test", type=FiniteFloatRange(0, 1, max_open=True), default=0.0, show_default=True)
@click.option(
    "--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Same seed, same split."
)
@click.option("--split", default=None, help=f"{SPLIT_HELP} Default: everything.")
@click.option("--format", "format_name", default="auto", show_default=True, help=FORMAT_HELP)
@format_option_flag
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for train.txt/val.txt/test.txt (default: ./<dataset folder name>_split).",
)
@click.option("--copy", is_flag=True, help="Also write one dataset per split (same format) under --out.")
@click.option("--force", is_flag=True, help="Write into a non-empty --out folder.")
@click.option(
    "--near-duplicate-distance",
    type=click.IntRange(0, 64),
    default=NEAR_DUPLICATE_DISTANCE,
    show_default=True,
    help="Keep images whose 128-bit difference hashes differ in at most this many bits in one split "
    "(0: byte-identical images only).",
)
@click.option(
    "--no-group-duplicates", is_flag=True, help="Split duplicate images independently (the old behaviour)."
)
@handle_errors
def split(
    path: str,
    val: float,
    test: float,
    seed: int,
    split: str | None,
    format_name: str,
    format_options: tuple[str, ...],
    out_dir: Path | None,
    copy: bool,
    force: bool,
    near_duplicate_distance: int,
    no_group_duplicates: bool,
) -> None:
    """Split the dataset at PATH into train/val/test, stratified so rare classes land in every split, with
    duplicate and near-duplicate images kept in one split.

    Writes one image path (relative to the dataset folder) per line into <out>/<split>.txt; give such a
    file as --split or data.<which>_split to read that split.
    """
    from yolox_sdk.data.conversion import check_output_folder
    from yolox_sdk.data.formats import load_dataset, resolve_dataset_path
    from yolox_sdk.data.splitting import (
        class_box_counts,
        duplicate_image_groups,
        split_dataset,
        write_split_lists,
    )

    resolved = resolve_dataset_path(path)[0]
    out_dir = out_dir or Path.cwd() / f"{(resolved if resolved.is_dir() else resolved.parent).name}_split"
    check_output_folder(out_dir, resolved, force)
    dataset = load_dataset(
        path, split=split, format=format_name, options=parse_format_options(format_options)
    )
    groups = [] if no_group_duplicates else duplicate_image_groups(dataset, near_duplicate_distance)
    result = split_dataset(dataset, val=val, test=test, seed=seed, groups=groups)
    lists = write_split_lists(dataset, result, out_dir)
    names = list(result.indices)
    click.echo(f"{len(dataset)} images split with seed {seed}:")
    click.echo(f"{'':<24}" + "".join(f"{name:>10}" for name in names))
    click.echo(f"{'images':<24}" + "".join(f"{len(result.indices[n]):>10}" for n in names))
    counts = {n: class_box_counts(result.records(dataset, n), dataset.num_classes) for n in names}
    for index, class_name in enumerate(dataset.class_names):
        click.echo(f"{class_name[:23]:<24}" + "".join(f"{counts[n][index]:>10}" for n in names))
    _echo_groups(dataset, groups, no_group_duplicates, near_duplicate_distance)
    click.echo(f"Split lists: {', '.join(str(p) for p in lists)}")
    options = dict(parse_format_options(format_options))
    _echo_how_to_use(path, resolved, dict(zip(names, lists, strict=True)), format_name, options)
    if copy:
        _write_copies(dataset, result, out_dir)


def _echo_groups(dataset: Any, groups: list[tuple[int, ...]], off: bool, distance: int) -> None:
    if off:
        click.echo("Duplicate images were not grouped (--no-group-duplicates).")
        return
    kind = "byte-identical" if distance == 0 else f"identical or near-duplicate (<= {distance} bits)"
    images = sum(len(group) for group in groups)
    click.echo(f"Kept {len(groups)} group(s) of {kind} images together ({images} images).")
    for group in groups[:5]:
        click.echo("  " + " = ".join(dataset.records[i].image_path.name for i in group))


def _echo_how_to_use(
    path: str, resolved: Path, lists: dict[str, Path], format_name: str, options: dict[str, Any]
) -> None:
    dataset_path = path if not Path(path).expanduser().exists() else str(resolved.resolve())
    click.echo("To train on them, in the config:")
    click.echo("  data:")
    if format_name != "auto":
        click.echo(f"    format: {format_name}")
    if options:
        click.echo(f"    format_options: {json.dumps(options)}")
    for which in ("train", "val", "test"):
        if which in lists:
            click.echo(f"    {which}_path: {dataset_path}")
            click.echo(f"    {which}_split: {lists[which].resolve()}")
    overrides = " ".join(
        f"data.{which}_path={dataset_path} data.{which}_split={lists[which].resolve()}"
        for which in ("train", "val")
    )
    click.echo(f"or: yolox-sdk train CONFIG {overrides}")
    click.echo(
        f"Other commands: --split {lists['val'].resolve()} (data info/validate/stats/convert, eval --data "
        f"{dataset_path})"
    )


def _config_key(name: str) -> str:
    return name if name in ("train", "val", "test") else "train"


def _write_copies(dataset: Any, result: Any, out_dir: Path) -> None:
    from yolox_sdk.data.conversion import save_dataset

    for name in result.indices:
        warnings = save_dataset(result.subset(dataset, name), dataset.format, out_dir / name, split=name)
        click.echo(
            f"Wrote the {name} split as {dataset.format} to {out_dir / name}: read it as "
            f"`yolox-sdk data info {out_dir / name} --split {name}` (data.{_config_key(name)}_path: "
            f"{out_dir / name}, data.{_config_key(name)}_split: {name})"
        )
        for warning in warnings:
            click.secho(f"  warning: {warning}", fg="yellow")


@data.command("convert")
@click.argument("source")
@click.option("--to", "to_format", required=True, help="Target format plugin (e.g. coco, voc, yolo).")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--from", "from_format", default="auto", show_default=True, help=FORMAT_HELP)
@format_option_flag
@click.option("--split", default=None, help=SPLIT_HELP)
@click.option(
    "--force", is_flag=True, help="Replace an earlier dataset in OUT_DIR (its files are deleted first)."
)
@handle_errors
def convert(
    source: str,
    to_format: str,
    out_dir: Path,
    from_format: str,
    format_options: tuple[str, ...],
    split: str | None,
    force: bool,
) -> None:
    """Convert the dataset at SOURCE to another format, written into OUT_DIR (SOURCE is never written).

    With --force, OUT_DIR may hold an earlier dataset (a previous conversion): it is emptied first, so old
    and new files never mix. A non-empty folder that is not a dataset is refused.
    """
    from yolox_sdk.data.conversion import convert_dataset

    options = parse_format_options(format_options)
    result = convert_dataset(source, to_format, out_dir, from_format, split, force, source_options=options)
    dataset = result.dataset
    if result.removed:
        click.echo(f"Deleted the earlier dataset in {out_dir} ({result.removed} files) before writing.")
    click.echo(
        f"Converted {dataset.source} ({dataset.format}, {len(dataset)} images, {dataset.num_boxes()} boxes) "
        f"to {to_format} in {out_dir}"
    )
    for line in dataset.report.lines():
        click.secho(f"  note (reading): {line}", fg="yellow")
    if result.warnings:
        click.secho(f"{to_format} cannot hold everything the source had:", fg="yellow", bold=True)
        for warning in result.warnings:
            click.secho(f"  warning: {warning}", fg="yellow")
    elif dataset.report.counts:
        click.echo(
            f"Nothing was lost in writing: {to_format} holds everything that was read (the notes above say "
            "what reading dropped or changed)."
        )
    else:
        click.echo(f"Nothing was lost: {to_format} holds everything the source had.")


@data.command("audit")
@dataset_arguments
@click.option(
    "--model",
    "checkpoint",
    type=click.Path(path_type=Path),
    required=True,
    help="Checkpoint (.pt) of a model trained on this kind of data.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for audit.json, audit.csv and gallery/ (default: ./<dataset folder name>_audit).",
)
@click.option(
    "--top",
    type=click.IntRange(0, 10_000),
    default=20,
    show_default=True,
    help="Suggestions drawn and printed.",
)
@click.option(
    "--fix-copy",
    "fix_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a copy of the dataset (same format) with the suggestions scoring --fix-threshold or more applied "
    "into this empty folder, for review; the input is never modified.",
)
@click.option(
    "--fix-threshold",
    type=FiniteFloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Score from which --fix-copy applies a suggestion.",
)
@click.option(
    "--conf",
    type=FiniteFloatRange(0, 1, min_open=True),
    default=0.05,
    show_default=True,
    help="Confidence threshold of the predictions compared with the labels.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1024),
    default=None,
    help="Images per batch (default: the checkpoint's).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@handle_errors
def audit(
    path: str,
    split: str | None,
    format_name: str,
    format_options: tuple[str, ...],
    checkpoint: Path,
    out_dir: Path | None,
    top: int,
    fix_dir: Path | None,
    fix_threshold: float,
    conf: float,
    batch_size: int | None,
    device: str,
) -> None:
    """Rank the labels of the dataset at PATH most likely to be wrong, by what the model in --model sees:
    missing boxes, wrong classes, badly placed boxes and spurious boxes, each with a score in [0, 1] and a fix.

    Writes audit.json, audit.csv and a gallery of the top suggestions into --out; the dataset is never modified.
    """
    from yolox_sdk.data.audit import audit_labels
    from yolox_sdk.data.conversion import check_dataset_folder, check_output_folder, save_dataset
    from yolox_sdk.data.formats import resolve_dataset_path
    from yolox_sdk.data.split_lists import written_split_name

    resolved = resolve_dataset_path(path)[0]
    out_dir = out_dir or Path.cwd() / f"{(resolved if resolved.is_dir() else resolved.parent).name}_audit"
    check_output_folder(out_dir, resolved, force=True)
    if fix_dir is not None:
        check_dataset_folder(fix_dir, resolved, force=False)
    result = audit_labels(
        path,
        checkpoint,
        split=split,
        format_name=format_name,
        format_options=parse_format_options(format_options),
        device=device,
        conf_threshold=conf,
        batch_size=batch_size,
    )
    for line in result.summary_lines(top):
        click.secho(line, fg="yellow" if line.startswith("note:") else None)
    written = result.write(out_dir, top)
    click.echo(f"Wrote audit.json, audit.csv and {len(written) - 2} gallery images to {out_dir}")
    if fix_dir is not None:
        fixed = result.fixed(fix_threshold)
        split_name = written_split_name(split)
        warnings = save_dataset(fixed.dataset, result.dataset.format, fix_dir, split=split_name)
        read_back = f" --split {split_name}" if split_name else ""
        click.echo(
            f"Wrote a copy with {len(fixed.applied)} suggestions (score >= {fix_threshold:g}) applied to {fix_dir} "
            f"({result.dataset.format}); review it with `yolox-sdk data info {fix_dir}{read_back}`"
        )
        for line in [*fixed.skipped, *warnings]:
            click.secho(f"  not applied or not kept: {line}", fg="yellow")
