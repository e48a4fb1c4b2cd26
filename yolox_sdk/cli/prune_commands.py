"""``yolox-sdk prune``: structured channel pruning of a checkpoint, with optional recovery finetuning."""

from __future__ import annotations

from pathlib import Path

import click

from yolox_sdk.cli.common import handle_errors


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--ratio",
    type=float,
    default=0.3,
    show_default=True,
    help="Share of the unpruned network's channels to remove, in (0, 1).",
)
@click.option(
    "--method",
    type=click.Choice(["l1", "l2", "taylor"]),
    default="l2",
    show_default=True,
    help="Channel importance: weight magnitude (l1, l2) or first-order Taylor on training batches.",
)
@click.option(
    "--scope",
    type=click.Choice(["sensitivity", "global", "uniform"]),
    default="sensitivity",
    show_default=True,
    help="How many channels each layer loses: from the loss measured on training batches when they go "
    "(sensitivity), by importance ranked across all layers (global), or the ratio in every layer (uniform).",
)
@click.option("--global", "scope", flag_value="global", help="Same as --scope global.")
@click.option("--uniform", "scope", flag_value="uniform", help="Same as --scope uniform.")
@click.option(
    "--target-params", type=int, help="Prune until at most this many parameters (instead of --ratio)."
)
@click.option(
    "--target-macs", type=int, help="Prune until at most this many MACs per image (instead of --ratio)."
)
@click.option(
    "--data",
    "data_path",
    help="Training data for --scope sensitivity, --method taylor and the BatchNorm recalibration "
    "[default: the checkpoint's training data].",
)
@click.option(
    "--taylor-batches", type=int, default=4, show_default=True, help="Training batches for Taylor importance."
)
@click.option(
    "--recalibrate/--no-recalibrate",
    default=True,
    show_default=True,
    help="Re-estimate the pruned network's BatchNorm statistics on 200 training images.",
)
@click.option("--val-data", help="Data to measure mAP on [default: the checkpoint's validation data].")
@click.option("--val-split", help="Split of --val-data.")
@click.option("--val-format", help="Dataset format of --val-data [default: auto].")
@click.option("--no-eval", is_flag=True, help="Skip the mAP measurements.")
@click.option(
    "--latency-runs", type=int, default=20, show_default=True, help="Timed CPU runs per model (0: none)."
)
@click.option(
    "--finetune-epochs",
    type=int,
    default=0,
    show_default=True,
    help="Recovery training epochs from the pruned checkpoint (the normal train job, in <out stem>-recovery/).",
)
@click.option(
    "--distill/--no-distill",
    default=True,
    show_default=True,
    help="Recovery training also learns from the unpruned CHECKPOINT as distillation teacher.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override the recovery run's config (repeatable), e.g. --set data.batch_size=16.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The pruned checkpoint [default: <stem>.pruned.pt next to CHECKPOINT].",
)
@click.option("--force", is_flag=True, help="Replace an existing --out.")
@handle_errors
def prune(
    checkpoint: Path,
    ratio: float,
    method: str,
    scope: str,
    target_params: int | None,
    target_macs: int | None,
    data_path: str | None,
    taylor_batches: int,
    recalibrate: bool,
    val_data: str | None,
    val_split: str | None,
    val_format: str | None,
    no_eval: bool,
    latency_runs: int,
    finetune_epochs: int,
    distill: bool,
    overrides: tuple[str, ...],
    out: Path | None,
    force: bool,
) -> None:
    """Remove channels from CHECKPOINT's network (torch-pruning's dependency graph keeps every coupled
    layer consistent; the head's class/box/objectness outputs are kept) and write an ordinary checkpoint
    that eval, predict, export, benchmark and train load.

    Prints parameters, MACs, CPU latency at batch 1 and val mAP before and after pruning, and after
    recovery with --finetune-epochs. mAP right after pruning is lower: finetune to recover it.
    """
    from yolox_sdk.optimization import prune as prune_checkpoint

    result = prune_checkpoint(
        checkpoint,
        ratio,
        method=method,
        scope=scope,
        target_params=target_params,
        target_macs=target_macs,
        out=out,
        force=force,
        data=data_path,
        taylor_batches=taylor_batches,
        recalibrate=recalibrate,
        val_data=val_data,
        val_split=val_split,
        val_format=val_format,
        evaluate=not no_eval,
        latency_runs=latency_runs,
        finetune_epochs=finetune_epochs,
        finetune_overrides=overrides,
        distill=distill,
    )
    click.echo(result.table())
    click.echo(f"Pruned checkpoint: {result.output}")
    if result.recovery_run is not None:
        click.echo(f"Recovery run: {result.recovery_run} (its best.pt is the model to use)")
    elif result.after.map is not None:
        click.echo(
            f"Recover the accuracy by training from it: yolox-sdk train CONFIG model.checkpoint={result.output} "
            f"training.distillation.teacher={checkpoint} (or prune again with --finetune-epochs N)."
        )
