"""The plugin author's kit (``yolox_sdk.testing``) run on our own built-ins and the LabelMe template.

Each built-in format (and LabelMe, loaded from its source folder without pip) passes the same round trip a
third-party format's tests would call; built-in loggers pass the never-raise check; the ONNX exporter passes
the exporter check on a tiny model. Each check is also shown to catch the plugin bug it exists for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_formats_detection import LABEL_STUDIO, registry, tiny_bccd  # noqa: F401 - fixtures

from yolox_sdk.data.records import DetectionDataset
from yolox_sdk.plugins.registry import Registry
from yolox_sdk.testing import check_exporter, check_logger, check_round_trip

# The largest box difference each format's text can cause: YOLO's normalised 8 decimals, CreateML's float
# centres and sizes; the others keep BCCD's integer pixels exactly.
TOLERANCE = {"yolo": 1e-3, "createml": 1e-3, LABEL_STUDIO: 1e-6}
CLASS_ORDER_KEPT = {"coco", "yolo"}  # the formats that store the class list itself


@pytest.mark.parametrize(
    "name", ["coco", "createml", "csv", "cvat", "kitti", "labelme", "voc", "yolo", LABEL_STUDIO]
)
def test_round_trip(registry: Registry, tiny_bccd: DetectionDataset, tmp_path: Path, name: str) -> None:  # noqa: F811
    again = check_round_trip(
        registry,
        name,
        tiny_bccd,
        tmp_path,
        atol=TOLERANCE.get(name, 0.0),
        class_order=name in CLASS_ORDER_KEPT,
    )
    assert again.format == name


class _LosesABox:
    """A writer that drops the last box of every image: what the round trip exists to catch."""

    def __init__(self, options: Any = None) -> None:
        from yolox_sdk.builtin.formats.voc import VocFormat

        self.voc = VocFormat()

    def detect(self, path: Path) -> float:
        return 0.0

    def load(self, path: Path, split: str | None = None) -> DetectionDataset:
        return self.voc.load(path, split)

    def save(self, dataset: DetectionDataset, out_dir: Path) -> list[str]:
        import attrs

        records = [attrs.evolve(r, boxes=r.boxes[:-1], labels=r.labels[:-1]) for r in dataset.records]
        return self.voc.save(attrs.evolve(dataset, records=records), out_dir)


def test_round_trip_names_the_image_that_changed(tiny_bccd: DetectionDataset, tmp_path: Path) -> None:  # noqa: F811
    from types import SimpleNamespace

    from yolox_sdk.plugins import hookimpl
    from yolox_sdk.testing import plugin_registry

    @hookimpl
    def register_dataset_formats(register: Any) -> None:
        register("lossy", _LosesABox)

    lossy = plugin_registry(("lossy", SimpleNamespace(register_dataset_formats=register_dataset_formats)))
    with pytest.raises(AssertionError, match=r"lossy: BloodImage_00000\.jpg: labels"):
        check_round_trip(lossy, "lossy", tiny_bccd, tmp_path)


def test_builtin_loggers_never_raise(tmp_path: Path) -> None:
    from yolox_sdk.data.formats import get_registry

    for name in ("csv", "tensorboard"):
        entry = get_registry().get("logger", name)
        run_dir = tmp_path / name
        run_dir.mkdir()  # the trainer creates the run folder before opening loggers
        check_logger(entry.factory(entry.options(), run_dir))


class _JsonLinesLogger:
    """The third-party logger of the issue's trial: one JSON line per call."""

    def __init__(self, path: Path, strict: bool = False) -> None:
        self.path, self.strict = path, strict

    def log_hyperparameters(self, params: Any) -> None:
        self._write({"params": params})

    def log_metrics(self, metrics: Any, step: int) -> None:
        self._write({"step": step, **metrics})

    def close(self) -> None:
        pass

    def _write(self, record: Any) -> None:
        import json

        text = json.dumps(record, allow_nan=not self.strict, default=str)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")


def test_logger_check_catches_a_logger_that_raises(tmp_path: Path) -> None:
    check_logger(_JsonLinesLogger(tmp_path / "ok.jsonl"))
    with pytest.raises(
        AssertionError, match=r"_JsonLinesLogger\.log_metrics.*raised ValueError.*never raise"
    ):
        check_logger(_JsonLinesLogger(tmp_path / "strict.jsonl", strict=True))


def test_onnx_exporter_passes_the_exporter_check(tmp_path: Path) -> None:
    from yolox_sdk.builtin.exporters.onnx import OnnxExporter, OnnxOptions

    result = check_exporter(OnnxExporter(OnnxOptions()), tmp_path)
    assert result.path == tmp_path / "tiny.onnx" and result.format == "onnx"


def test_exporter_check_catches_an_exporter_that_changes_the_model(tmp_path: Path) -> None:
    from yolox_sdk.plugins.interfaces import ExportResult

    class Careless:
        def export(self, model: Any, metadata: Any, out_dir: Path, sample_images: Any) -> ExportResult:
            model.train()
            path = out_dir / f"{metadata['file_stem']}.bin"
            path.write_bytes(b"")
            return ExportResult(path, "bin")

    with pytest.raises(AssertionError, match=r"Careless left the model in training mode"):
        check_exporter(Careless(), tmp_path)


def test_documented_metadata_keys_are_what_the_runner_sends() -> None:
    from types import SimpleNamespace

    from yolox_sdk.export.runner import export_metadata
    from yolox_sdk.models.variants import make_spec
    from yolox_sdk.plugins.interfaces import METADATA_KEYS
    from yolox_sdk.testing import tiny_model_and_metadata

    checkpoint = SimpleNamespace(
        spec=make_spec("yolox-nano", num_classes=2), class_names=("a", "b"), sdk_version="0"
    )
    sent = export_metadata(checkpoint, file_stem="best")  # type: ignore[arg-type]
    assert set(METADATA_KEYS) <= set(sent)
    assert set(tiny_model_and_metadata()[1]) == set(sent)
