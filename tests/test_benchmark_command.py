"""``yolox-sdk benchmark`` end to end on coco8's 4 val images with the COCO nano at 256 px."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime
import pytest
import torch
from click.testing import CliRunner

from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.engine.jobs import evaluate_checkpoint
from yolox_sdk.models import create_model
from yolox_sdk.plugins.hookspecs import hookimpl


def cpuinfo_field(name: str) -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    raise AssertionError(f"no {name} in /proc/cpuinfo")


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads the CPU from /proc/cpuinfo")
def test_benchmark_writes_table_json_and_markdown_with_a_row_for_what_cannot_run(tmp_path: Path) -> None:
    names = load_dataset("coco8", split="val", format="yolo").class_names
    model, spec, _ = create_model("yolox-nano", 80, pretrained=True, input_size=(256, 256))
    checkpoint = save_checkpoint(tmp_path / "nano.pt", Checkpoint(model.state_dict(), spec, names, config={}))
    out = tmp_path / "bench"
    args = [
        "benchmark",
        str(checkpoint),
        "--data",
        "coco8",
        "--format",
        "yolo",
        "--formats",
        "pytorch,onnx,tensorrt",
    ]
    result = CliRunner().invoke(
        cli, [*args, "--runs", "3", "--warmup", "1", "--batch", "2", "--threads", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output

    report = json.loads((out / "benchmark.json").read_text())
    rows = {row["format"]: row for row in report["rows"]}
    assert list(rows) == ["pytorch", "onnx", "tensorrt"]
    expected = evaluate_checkpoint(
        checkpoint, "coco8", "val", "yolo", device="cpu"
    ).metrics  # the eval command's path
    for name in ("pytorch", "onnx"):
        row = rows[name]
        assert row["status"] == "ok" and row["reason"] is None
        assert row["mAP"] == pytest.approx(expected["mAP"], abs=1e-3)
        assert row["mAP50"] == pytest.approx(expected["mAP50"], abs=1e-3)
        assert 0 < row["latency_ms_median"] <= row["latency_ms_p90"]
        assert row["throughput"] > 0 and row["size_mb"] == pytest.approx(
            Path(row["path"]).stat().st_size / 2**20, rel=1e-3
        )
    assert rows["pytorch"]["path"] == str(checkpoint) and rows["pytorch"]["speedup"] == 1.0
    assert Path(rows["onnx"]["path"]) == out / "onnx" / "nano.onnx" and rows["onnx"]["max_abs_diff"] < 1e-4
    assert rows["onnx"]["speedup"] == pytest.approx(
        rows["pytorch"]["latency_ms_median"] / rows["onnx"]["latency_ms_median"], rel=1e-2
    )
    assert rows["tensorrt"]["status"] == "not run" and "trtexec --onnx=" in rows["tensorrt"]["reason"]
    assert rows["tensorrt"]["mAP"] is None

    machine = report["machine"]
    assert machine["model"] == cpuinfo_field("model name")
    assert machine["flags"] == cpuinfo_field("flags").split()
    assert (
        machine["versions"]["torch"] == torch.__version__
        and machine["versions"]["onnxruntime"] == onnxruntime.__version__
    )
    assert (
        report["settings"]["threads"] == 2
        and report["settings"]["runs"] == 3
        and report["settings"]["num_images"] == 4
    )

    markdown = (out / "benchmark.md").read_text()
    assert "| format | status |" in markdown and cpuinfo_field("model name") in markdown
    assert "- tensorrt: " in markdown
    for name in ("pytorch", "onnx", "tensorrt"):
        assert any(line.startswith(name) for line in result.output.splitlines())
    assert f"{rows['onnx']['mAP']:.4f}" in result.output


def test_benchmark_refuses_a_format_named_twice(tmp_path: Path) -> None:
    checkpoint = tmp_path / "nano.pt"
    names = load_dataset("coco8", split="val", format="yolo").class_names
    model, spec, _ = create_model("yolox-nano", 80, pretrained=False, input_size=(160, 160))
    save_checkpoint(checkpoint, Checkpoint(model.state_dict(), spec, names, config={}))
    args = ["benchmark", str(checkpoint), "--data", "coco8", "--format", "yolo", "--formats", "onnx,onnx"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "each format once" in result.output and "Traceback" not in result.output


class ExporterPlugins:
    """Two third-party exporters: one writes a format no runtime reads, one needs a missing library."""

    @staticmethod
    def _unreadable(options: object) -> object:
        class Unreadable:
            def export(self, model, metadata, out_dir, sample_images):  # noqa: ANN001, ANN202
                from yolox_sdk.plugins.interfaces import ExportResult

                out_dir.mkdir(parents=True, exist_ok=True)
                path = out_dir / f"{metadata['file_stem']}.xyz"
                path.write_bytes(b"a model no runtime reads")
                return ExportResult(path=path, format="xyz")

        return Unreadable()

    @staticmethod
    def _needs_library(options: object) -> object:
        class NeedsLibrary:
            def export(self, model, metadata, out_dir, sample_images):  # noqa: ANN001, ANN202
                raise ImportError("No module named 'fancy_runtime'")

        return NeedsLibrary()

    @hookimpl
    def register_exporters(self, register) -> None:  # noqa: ANN001
        register("xyz", self._unreadable, description="test: a format without a runtime")
        register("fancy", self._needs_library, description="test: an exporter whose library is missing")


def test_formats_without_a_runtime_or_a_library_are_rows_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolox_sdk import benchmark
    from yolox_sdk.plugins import manager

    monkeypatch.setattr(
        manager, "_cached", manager.build_plugin_manager([("test-exporters", ExporterPlugins())])
    )
    names = load_dataset("coco8", split="val", format="yolo").class_names
    model, spec, _ = create_model("yolox-nano", 80, pretrained=False, input_size=(160, 160))
    checkpoint = save_checkpoint(tmp_path / "nano.pt", Checkpoint(model.state_dict(), spec, names, config={}))
    result = benchmark(
        checkpoint,
        "coco8",
        formats=["pytorch", "xyz", "fancy"],
        runs=1,
        warmup=0,
        batch=1,
        out_dir=tmp_path / "b",
        format_name="yolo",
    )
    rows = {row.format: row for row in result.rows}
    assert rows["pytorch"].status == "ok"
    assert rows["xyz"].status == "not run"
    assert (
        "No installed runtime reads" in rows["xyz"].reason
        and str(tmp_path / "b" / "xyz" / "nano.xyz") in rows["xyz"].reason
    )
    assert (
        rows["fancy"].status == "not run"
        and rows["fancy"].reason == "ImportError: No module named 'fancy_runtime'"
    )
    saved = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert [row["status"] for row in saved["rows"]] == ["ok", "not run", "not run"]


def test_the_size_of_an_openvino_ir_counts_its_weights_file(tmp_path: Path) -> None:
    from yolox_sdk.benchmarking.runner import _size_bytes

    (tmp_path / "best.xml").write_bytes(b"<net/>" * 10)
    (tmp_path / "best.bin").write_bytes(bytes(1000))
    (tmp_path / "best.onnx").write_bytes(bytes(300))
    assert _size_bytes(tmp_path / "best.xml") == 60 + 1000
    assert _size_bytes(tmp_path / "best.onnx") == 300
