"""The accuracy-budget search shared by the INT8 exporters (``onnx-int8``, ``openvino-int8``, ...).

No quantization tool decides which YOLOX layers must stay float for a given AP budget, so each INT8
exporter measures it with the same search, and only the two backend-specific steps differ: *build* the
model quantized with some blocks left float (a file) and *evaluate* a file on the validation data. The
search:

1. evaluates the float reference and the all-INT8 model; done if the drop is within ``max_ap_drop``;
2. measures each block's sensitivity as the AP lost when that block *alone* is INT8 (restoring blocks
   one at a time from the all-INT8 model says nothing when two blocks each break it on their own, as
   YOLOX-Nano's stem and dark2 do);
3. keeps the most sensitive blocks float, greedily, while the float share of the convolutions stays
   within ``max_float_fraction``, until a mix is within budget; otherwise raises ``ExportError`` naming
   the best trade-off found.

The module also holds what the exporters share around the search: their inputs (calibration images from
the checkpoint's training data, letterboxed as in evaluation; the validation data), the AP of a loaded
model through the SDK's evaluator, and the backend-neutral half of the report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import numpy as np

from yolox_sdk.errors import DatasetError, ExportError
from yolox_sdk.plugins.interfaces import METADATA_FILE_STEM

if TYPE_CHECKING:
    from yolox_sdk.data.records import DetectionDataset
    from yolox_sdk.plugins.interfaces import LoadedModel

log = logging.getLogger(__name__)

CALIBRATION_SEED = 0


@attrs.frozen
class Trial:
    """One mix that was evaluated: the blocks kept float and the AP50:95 / AP50 it reached (points)."""

    float_blocks: tuple[str, ...]
    ap: float
    ap50: float


@attrs.frozen
class Block:
    """A group of layers the search keeps float or quantizes together.

    Attributes:
        name: as ``yolox_sdk.export.quantization.node_block`` names it (``stem``, ``dark3``, ``head.cls_preds.0``).
        share: its share of the graph's convolutions (0..1), what ``max_float_fraction`` counts.
        searchable: whether the search may keep it float (blocks without convolutions gain nothing, except
            the head's output ops).
    """

    name: str
    share: float
    searchable: bool = True


@attrs.frozen
class Budget:
    """The search's limits and how its messages name the exporter.

    Attributes:
        exporter: the exporter's name, prefixing logs and errors (``onnx-int8``).
        max_ap_drop: largest accepted loss of AP50:95, in points.
        max_float_fraction: largest share of convolutions that may stay float.
        reference: how the float reference is named in logs and notes (``ORT``, ``OpenVINO``).
        remedies: the end of the no-mix error: what else the user may try.
    """

    exporter: str
    max_ap_drop: float
    max_float_fraction: float
    reference: str
    remedies: str


class Backend(Protocol):
    """The two steps of the search that depend on the quantization tool."""

    def candidate(self, float_blocks: Sequence[str]) -> Path:
        """The model quantized with ``float_blocks`` kept float, as a file (built once per mix)."""
        ...

    def evaluate(self, path: Path) -> tuple[float, float]:
        """AP50:95 and AP50, in points, of the model file at ``path`` on the validation data."""
        ...


@attrs.frozen
class SearchResult:
    """What the search found: the chosen mix and its file, the float reference and the evidence."""

    chosen: Trial
    chosen_path: Path
    fp32: Trial
    all_int8: Trial
    sensitivity: Mapping[str, float]
    trials: tuple[Trial, ...]


def within(fp32_ap: float, budget: float) -> Callable[[Trial], bool]:
    """Whether a trial loses at most ``budget`` points against ``fp32_ap`` (with float slack)."""
    return lambda trial: fp32_ap - trial.ap <= budget + 1e-9


def no_mix_message(fp32: Trial, best: Trial, budget: Budget, share: float) -> str:
    """The error when no mix is within budget, naming the best trade-off found."""
    return (
        f"{budget.exporter}: no mix of INT8 and float layers loses at most max_ap_drop={budget.max_ap_drop:g} "
        f"AP50:95 points (float AP50:95 {fp32.ap:.2f}). Best trade-off found: AP50:95 {best.ap:.2f} "
        f"(drop {fp32.ap - best.ap:.2f}) with {list(best.float_blocks) or 'nothing'} kept float ({share:.0%} of "
        f"the convolutions; at most max_float_fraction={budget.max_float_fraction:g} may be). "
        f"{budget.remedies}"
    )


class _Search:
    """One run of the search (module docstring); ``trial`` logs and records every evaluation."""

    def __init__(self, backend: Backend, blocks: Sequence[Block], budget: Budget, val_images: int) -> None:
        self.backend, self.budget, self.val_images = backend, budget, val_images
        self.blocks = list(blocks)
        self.names = tuple(block.name for block in self.blocks)
        self.shares = {block.name: block.share for block in self.blocks}
        self.trials: list[Trial] = []
        self.paths: dict[tuple[str, ...], Path] = {}

    def float_share(self, float_blocks: Sequence[str]) -> float:
        return sum(self.shares[block] for block in float_blocks)

    def fits(self, float_blocks: Sequence[str]) -> bool:
        """Within ``max_float_fraction`` (with slack for the float sum of shares)."""
        return self.float_share(float_blocks) <= self.budget.max_float_fraction + 1e-9

    def all_but(self, block: str) -> tuple[str, ...]:
        """Every block but ``block`` (the mix where only ``block`` is INT8)."""
        return tuple(name for name in self.names if name != block)

    def trial(self, float_blocks: Sequence[str], log_as: str | None = None) -> Trial:
        path = self.backend.candidate(tuple(float_blocks))
        self.paths[tuple(float_blocks)] = path
        ap, ap50 = self.backend.evaluate(path)
        result = Trial(tuple(float_blocks), ap, ap50)
        self.trials.append(result)
        label = log_as or f"float {list(float_blocks) or 'nothing'}"
        log.info("%s: %s -> AP50:95 %.2f", self.budget.exporter, label, ap)
        return result

    def result(
        self, chosen: Trial, fp32: Trial, all_int8: Trial, sensitivity: dict[str, float]
    ) -> SearchResult:
        return SearchResult(
            chosen, self.paths[chosen.float_blocks], fp32, all_int8, sensitivity, tuple(self.trials)
        )

    def run(self, float_path: Path) -> SearchResult:
        budget = self.budget
        fp32_ap, fp32_ap50 = self.backend.evaluate(float_path)
        fp32 = Trial(self.names, fp32_ap, fp32_ap50)
        log.info(
            "%s: float graph (%s) AP50:95 %.2f on %d val images",
            budget.exporter,
            budget.reference,
            fp32_ap,
            self.val_images,
        )
        accepted = within(fp32.ap, budget.max_ap_drop)
        all_int8 = best = self.trial(())
        if accepted(best):
            return self.result(best, fp32, all_int8, {})
        allowed = [block.name for block in self.blocks if block.searchable and self.fits([block.name])]
        sensitivity = {
            block: fp32.ap - self.trial(self.all_but(block), log_as=f"only {block} int8").ap
            for block in allowed
        }
        chosen: list[str] = []
        for block in sorted(allowed, key=lambda name: -sensitivity[name]):
            if not self.fits([*chosen, block]):
                continue
            chosen.append(block)
            current = self.trial(chosen)
            if current.ap > best.ap:
                best = current
            if accepted(current):
                return self.result(current, fp32, all_int8, sensitivity)
        raise ExportError(no_mix_message(fp32, best, budget, self.float_share(best.float_blocks)))


def search(
    backend: Backend, float_path: Path, blocks: Sequence[Block], budget: Budget, val_images: int
) -> SearchResult:
    """Find the mix with the fewest float blocks the greedy order reaches within ``budget``.

    Args:
        backend: builds and evaluates candidates.
        float_path: the float reference file (evaluated with ``backend.evaluate``).
        blocks: every block of the graph in graph order (the float reference keeps all of them float).
        budget: limits and names for messages.
        val_images: how many validation images ``evaluate`` uses (for the log).

    Raises:
        ExportError: no mix within ``budget.max_ap_drop`` (the message names the best trade-off).
    """
    return _Search(backend, blocks, budget, val_images).run(float_path)


def search_report(result: SearchResult, budget: Budget) -> dict[str, Any]:
    """The backend-neutral entries of an INT8 file's ``quantization`` report (APs in points)."""
    return {
        "fp32_ap": round(result.fp32.ap, 3),
        "fp32_ap50": round(result.fp32.ap50, 3),
        "int8_ap": round(result.chosen.ap, 3),
        "int8_ap50": round(result.chosen.ap50, 3),
        "ap_drop": round(result.fp32.ap - result.chosen.ap, 3),
        "all_int8_ap": round(result.all_int8.ap, 3),
        "max_ap_drop": budget.max_ap_drop,
        "float_blocks": list(result.chosen.float_blocks),
    }


def sensitivity_report(result: SearchResult) -> dict[str, Any]:
    """The report's ``sensitivity`` (points lost when a block alone is INT8) and number of ``trials``."""
    return {
        "sensitivity": {block: round(gain, 3) for block, gain in result.sensitivity.items()},
        "trials": len(result.trials),
    }


def latency_report(fp32_ms: float, int8_ms: float) -> dict[str, Any]:
    """The report's latency entries (batch 1 medians) and the speed-up of the INT8 file."""
    return {
        "fp32_latency_ms": round(fp32_ms, 3),
        "int8_latency_ms": round(int8_ms, 3),
        "speedup": round(fp32_ms / int8_ms, 3) if int8_ms > 0 else None,
    }


def report_notes(report: Mapping[str, Any], reference: str, calibration: str) -> list[str]:
    """Human-readable lines of a report built from the pieces above plus ``float_nodes``, ``val_images``,
    ``calibration_images`` and ``calibration_skipped``; ``calibration`` describes the tool's settings."""
    skipped = f", {report['calibration_skipped']} unreadable skipped" if report["calibration_skipped"] else ""
    return [
        f"fp32 ({reference}) AP50:95 {report['fp32_ap']:.2f}, AP50 {report['fp32_ap50']:.2f} on "
        f"{report['val_images']} val images",
        f"int8 AP50:95 {report['int8_ap']:.2f}, AP50 {report['int8_ap50']:.2f}: drop {report['ap_drop']:.2f} "
        f"(budget {report['max_ap_drop']:g})",
        f"everything int8: AP50:95 {report['all_int8_ap']:.2f}",
        f"kept float: {', '.join(report['float_blocks']) or 'nothing'} ({len(report['float_nodes'])} nodes; "
        f"{report['trials']} mixes evaluated)",
        f"latency batch 1 (median, CPU): fp32 {report['fp32_latency_ms']:.2f} ms, int8 "
        f"{report['int8_latency_ms']:.2f} ms, speed-up {report['speedup']}x",
        f"calibrated on {report['calibration_images']} images ({calibration}){skipped}",
    ]


# --- the search's inputs -----------------------------------------------------------------------------


class DataOptions(Protocol):
    """The option fields every INT8 exporter shares for its calibration and validation data."""

    calibration_images: int
    calibration_folder: str | None
    val_path: str | None
    val_split: str | None
    val_format: str
    eval_images: int | None


def calibration_paths(exporter: str, options: DataOptions, config: Mapping[str, Any]) -> list[Path]:
    """Calibration image files: ``calibration_folder``'s, else a seeded draw from the training data."""
    from yolox_sdk.evaluation.predict import list_images

    if options.calibration_folder:
        return list_images(options.calibration_folder)[: options.calibration_images]
    data = config.get("data") or {}
    if not data.get("train_path"):
        raise ExportError(
            f"{exporter} needs calibration images: the checkpoint's config names no training data "
            f"(data.train_path). Pass --option {exporter}.calibration_folder=FOLDER (images like the "
            f"deployment's), and --option {exporter}.val_path=DATASET if it has no validation data either."
        )
    dataset = load_for(
        exporter, data["train_path"], data.get("train_split"), data.get("format", "auto"), "data.train_path"
    )
    paths = [record.image_path for record in dataset.records]
    generator = np.random.default_rng(CALIBRATION_SEED)
    chosen = generator.permutation(len(paths))[: options.calibration_images]
    return [paths[index] for index in sorted(chosen)]


def calibration_arrays(
    exporter: str, options: DataOptions, config: Mapping[str, Any], input_size: tuple[int, int]
) -> tuple[list[np.ndarray], int]:
    """Letterboxed calibration images (CHW float32, as evaluation feeds them) and how many were skipped as
    unreadable."""
    from yolox_sdk.data.preprocess import letterbox, read_image

    paths = calibration_paths(exporter, options, config)
    arrays, skipped = [], 0
    for path in paths:
        try:
            arrays.append(letterbox(read_image(path), input_size)[0])
        except DatasetError as error:
            log.warning("%s: calibration image skipped: %s", exporter, error)
            skipped += 1
    if not arrays:
        source = options.calibration_folder or "the checkpoint's training data"
        raise ExportError(
            f"{exporter} has no calibration images: {len(paths)} found in {source}, {skipped} unreadable. Pass "
            f"--option {exporter}.calibration_folder=FOLDER with readable images like the deployment's."
        )
    return arrays, skipped


def load_for(exporter: str, path: str, split: str | None, format_name: str, key: str) -> DetectionDataset:
    """A dataset named by the config key ``key``; a read failure is an ``ExportError`` naming it."""
    from yolox_sdk.data.formats import load_dataset

    try:
        return load_dataset(path, split=split, format=format_name)
    except DatasetError as error:
        raise ExportError(f"{exporter} cannot read {key} ({path}): {error}") from error


def validation_data(
    exporter: str, options: DataOptions, config: Mapping[str, Any], class_names: tuple[str, ...]
) -> DetectionDataset:
    """The data the AP drop is measured on: ``val_path``, else the checkpoint's validation data."""
    from yolox_sdk.evaluation.runner import dataset_for_checkpoint

    data = config.get("data") or {}
    if options.val_path:
        key = f"export.options.{exporter}.val_path"
        dataset = load_for(exporter, options.val_path, options.val_split, options.val_format, key)
    elif data.get("val_path"):
        dataset = load_for(
            exporter, data["val_path"], data.get("val_split"), data.get("format", "auto"), "data.val_path"
        )
    else:
        raise ExportError(
            f"{exporter} measures the AP it loses on validation data, but the checkpoint's config names none "
            f"(data.val_path). Pass --option {exporter}.val_path=DATASET (and val_split=SPLIT)."
        )
    try:
        dataset = dataset_for_checkpoint(dataset, class_names)
    except DatasetError as error:
        raise ExportError(f"{exporter}: {error}") from error
    if options.eval_images:
        dataset = attrs.evolve(dataset, records=list(dataset.records[: options.eval_images]))
    return dataset


def sample_arrays(sample_images: Sequence[Path], input_size: tuple[int, int]) -> list[np.ndarray]:
    """The export's sample images, letterboxed like the calibration images."""
    from yolox_sdk.data.preprocess import letterbox, read_image

    return [letterbox(read_image(Path(path)), input_size)[0] for path in sample_images]


def evaluation_settings(config: Mapping[str, Any]) -> Any:
    """The evaluation thresholds of the checkpoint's saved config (what ``eval`` of the checkpoint uses)."""
    from yolox_sdk.evaluation.runner import checkpoint_evaluation_settings

    # It reads only the saved config's evaluation section, which is what the exporter holds.
    return checkpoint_evaluation_settings(SimpleNamespace(config=config))  # type: ignore[arg-type]


def ap_points(
    loaded: LoadedModel, dataset: DetectionDataset, input_size: tuple[int, int], settings: Any
) -> tuple[float, float]:
    """AP50:95 and AP50 of a model loaded by a runtime on ``dataset``, in points, via the SDK's evaluator
    (so the drop is measured exactly as ``yolox-sdk eval`` of the file would measure it)."""
    from yolox_sdk.evaluation.runner import evaluate_model
    from yolox_sdk.runtimes import as_torch_module

    metrics = evaluate_model(as_torch_module(loaded), dataset, input_size, settings, "cpu").metrics
    ap, ap50 = metrics["mAP"], metrics["mAP50"]
    return (0.0 if math.isnan(ap) else 100 * ap), (0.0 if math.isnan(ap50) else 100 * ap50)


def int8_file_stem(metadata: Mapping[str, Any]) -> str:
    """``<file_stem>.int8``: the name of an INT8 export, so that it never replaces the float file of the same
    format exported into the same folder (``--format onnx --format onnx-int8``); runtimes read it by its
    suffix like any other file of the format."""
    return f"{metadata.get(METADATA_FILE_STEM) or 'model'}.int8"
