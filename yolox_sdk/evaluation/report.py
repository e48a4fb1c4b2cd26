"""Everything an evaluation can say about a model, in one object: ``EvaluationReport``.

``analyse_evaluation`` turns an ``EvalResult`` (which keeps pycocotools' accumulated evaluator) into
the report; ``EvaluationReport.write`` lays it out in a folder::

    eval.json                 metrics, per-class AP, settings, recommended_conf, the files below
    pr_curve.png / pr_curves.json
    f1_curve.png, precision_curve.png, recall_curve.png / confidence_curves.json
    confusion_matrix.png, confusion_matrix_normalized.png / confusion_matrix.json
    errors.png / errors.json, worst_images/NN_<image>.png      (with the error analysis)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.evaluation.coco_eval import EvalResult
from yolox_sdk.evaluation.confusion import ConfusionMatrix, confusion_matrix
from yolox_sdk.evaluation.curves import (
    ConfidenceCurves,
    PrecisionRecallCurves,
    RecommendedThreshold,
    confidence_curves,
    precision_recall_curves,
    recommended_threshold,
)
from yolox_sdk.evaluation.error_analysis import ErrorAnalysis, analyse_errors
from yolox_sdk.evaluation.gallery import DEFAULT_GALLERY_SIZE, write_gallery
from yolox_sdk.evaluation.matches import MatchedBoxes, matched_boxes

# The deployment confidence when the model recommends none (it predicted nothing): predict's default.
FALLBACK_CONF = 0.3
GALLERY_FOLDER = "worst_images"


@attrs.define(eq=False)
class EvaluationReport:
    """An evaluation's metrics plus the curves, confusion matrix, errors and recommended threshold.

    Attributes:
        result: the COCO metrics and per-class AP.
        pr_curves: precision-recall curves (pycocotools' accumulated precision).
        confidence_curves: precision, recall and F1 against confidence at IoU 0.5.
        recommended: the max-F1 confidence, or ``None`` when the model predicted nothing.
        deploy_conf: the confidence the confusion matrix and gallery use: given, else the recommended one,
            else ``FALLBACK_CONF``.
        confusion: the confusion matrix at ``deploy_conf`` and IoU 0.5.
        errors: the TIDE-style error analysis, when asked for.
        matches: the boxes and matches everything above was computed from.
        image_paths: each record's image, for the gallery.
        files: what ``write`` wrote, by name.
    """

    result: EvalResult
    pr_curves: PrecisionRecallCurves
    confidence_curves: ConfidenceCurves
    recommended: RecommendedThreshold | None
    deploy_conf: float
    confusion: ConfusionMatrix
    errors: ErrorAnalysis | None
    matches: MatchedBoxes
    image_paths: tuple[Path, ...] = ()
    files: dict[str, Path] = attrs.field(factory=dict)

    @property
    def recommended_conf(self) -> float | None:
        """The confidence threshold with the highest F1 at IoU 0.5 (mean over classes), if any."""
        return None if self.recommended is None else self.recommended.conf

    @property
    def has_predictions(self) -> bool:
        """Whether the model predicted anything on the dataset."""
        return self.matches.num_detections > 0

    def table(self) -> str:
        """The per-class AP table of ``result``."""
        return self.result.table()

    def to_dict(self) -> dict[str, Any]:
        """``eval.json``: the result's metrics, per-class AP and settings, the recommended threshold, the
        deployment confidence, the error counts and gains (when analysed) and the files written."""
        content = self.result.to_dict()
        content["recommended_conf"] = self.recommended_conf
        content["recommended"] = None if self.recommended is None else self.recommended.to_dict()
        content["deploy_conf"] = round(self.deploy_conf, 6)
        if self.errors is not None:
            content["errors"] = self.errors.to_dict()["all"]
        content["files"] = {name: str(path) for name, path in self.files.items()}
        return content

    def write(
        self,
        out_dir: Path | str,
        json_path: Path | str | None = None,
        gallery_size: int = DEFAULT_GALLERY_SIZE,
    ) -> dict[str, Path]:
        """Write every figure and its JSON into ``out_dir``, then ``eval.json`` (or ``json_path``).

        Returns the files written by name (also kept in ``files`` and listed in the JSON).
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        files = self._write_figures(out_dir)
        files.update(self._write_numbers(out_dir))
        if self.errors is not None:
            gallery = write_gallery(
                self.matches,
                self.errors,
                self.image_paths,
                self.deploy_conf,
                out_dir / GALLERY_FOLDER,
                gallery_size,
            )
            if gallery:
                files["worst_images"] = out_dir / GALLERY_FOLDER
        self.files = {**files, "eval": Path(json_path) if json_path else out_dir / "eval.json"}
        _write_json(self.files["eval"], self.to_dict())
        return dict(self.files)

    def _write_figures(self, out_dir: Path) -> dict[str, Path]:
        from yolox_sdk.evaluation import plots  # matplotlib is imported only when figures are drawn

        predicted = self.has_predictions
        files = {
            "pr_curve": plots.plot_precision_recall(self.pr_curves, out_dir / "pr_curve.png", predicted),
            "confusion_matrix": plots.plot_confusion_matrix(
                self.confusion, out_dir / "confusion_matrix.png", False
            ),
            "confusion_matrix_normalized": plots.plot_confusion_matrix(
                self.confusion, out_dir / "confusion_matrix_normalized.png", True
            ),
        }
        for metric in ("f1", "precision", "recall"):
            files[f"{metric}_curve"] = plots.plot_against_confidence(
                self.confidence_curves, metric, out_dir / f"{metric}_curve.png", self.recommended, predicted
            )
        if self.errors is not None:
            files["errors_plot"] = plots.plot_errors(self.errors, out_dir / "errors.png", predicted)
        return files

    def _write_numbers(self, out_dir: Path) -> dict[str, Path]:
        contents = {
            "pr_curves": self.pr_curves.to_dict(),
            "confidence_curves": {
                **self.confidence_curves.to_dict(),
                "recommended": None if self.recommended is None else self.recommended.to_dict(),
            },
            "confusion_matrix_json": self.confusion.to_dict(),
        }
        if self.errors is not None:
            contents["errors"] = self.errors.to_dict()
        files = {}
        for name, content in contents.items():
            path = out_dir / f"{name.removesuffix('_json')}.json"
            files[name] = _write_json(path, content)
        return files

    def summary(self) -> str:
        """What ``yolox-sdk eval`` prints after the table: the threshold, and the errors when analysed."""
        lines = []
        if self.errors is not None:
            counts = self.errors.counts()
            lines.append(
                f"Errors (TIDE-style, foreground IoU 0.5, background IoU 0.1; AP50 {self.errors.ap50:.3f}):"
            )
            lines.append(f"  {'type':<15} {'count':>6}  {'AP50 gain if fixed':>18}")
            for kind, count in counts.items():
                gain = self.errors.gain[kind]
                lines.append(f"  {kind:<15} {count:>6}  {'n/a' if math.isnan(gain) else f'{gain:+.3f}':>18}")
        if self.recommended is None:
            lines.append(
                f"Recommended confidence threshold: none (no predictions); predict --conf auto uses {FALLBACK_CONF}."
            )
        else:
            best = self.recommended
            lines.append(
                f"Recommended confidence threshold: {best.conf:.3f} (max F1 {best.f1:.3f} at IoU 0.5: precision "
                f"{best.precision:.3f}, recall {best.recall:.3f})"
            )
        return "\n".join(lines)


def _write_json(path: Path, content: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return path


def analyse_evaluation(
    result: EvalResult,
    class_names: Sequence[str],
    image_paths: Sequence[Path] = (),
    deploy_conf: float | None = None,
    errors: bool = False,
) -> EvaluationReport:
    """The report of an evaluation: curves, recommended threshold, confusion matrix and (``errors``)
    the TIDE-style error analysis.

    Args:
        result: an ``EvalResult`` that kept its evaluator (``evaluate``/``evaluate_detections`` do).
        class_names: the classes, in label order.
        image_paths: each record's image, in record order, for the gallery of worst images.
        deploy_conf: the confidence of the confusion matrix and gallery; ``None``: the recommended one.
    """
    if result.evaluator is None:
        raise ValueError("analyse_evaluation needs an EvalResult that kept its COCOeval (result.evaluator).")
    names = tuple(class_names)
    matches = matched_boxes(result.evaluator, names, result.category_ids)
    recommended = recommended_threshold(matches)
    if deploy_conf is None:
        deploy_conf = recommended.conf if recommended is not None else FALLBACK_CONF
    return EvaluationReport(
        result=result,
        pr_curves=precision_recall_curves(result.evaluator, names, result.category_ids),
        confidence_curves=confidence_curves(matches),
        recommended=recommended,
        deploy_conf=float(deploy_conf),
        confusion=confusion_matrix(matches, deploy_conf),
        errors=analyse_errors(matches) if errors else None,
        matches=matches,
        image_paths=tuple(Path(path) for path in image_paths),
    )
