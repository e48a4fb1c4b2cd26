"""The example notebooks in ``examples/notebooks``: stored without outputs, and each one runs top to bottom.

The slow tests execute every notebook with nbclient in the virtual environment's own kernel (the
interpreter running pytest), in a temporary working folder so that their ``runs/`` and exports never land in
the repository, and then check what the notebook produced: files it wrote and values it printed.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "examples" / "notebooks"
NAMES = (
    "01_finetune_your_data.ipynb",
    "02_evaluate_compare_audit.ipynb",
    "03_export_and_benchmark.ipynb",
    "04_write_a_plugin.ipynb",
)
CELL_TIMEOUT_S = 600


def test_every_notebook_is_listed() -> None:
    assert sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, name
    for index, cell in enumerate(code):
        assert cell.outputs == [], f"{name}: code cell {index} has outputs; clear them before committing"
        assert cell.execution_count is None, f"{name}: code cell {index} has an execution count"


@pytest.mark.parametrize("name", NAMES)
def test_first_code_cell_holds_the_small_settings(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert "import" not in first.source, "the first code cell holds parameters only"
    assert "real" in first.source.lower(), "the first code cell says which values to use on real data"


def _kernel_manager():
    """A manager for the ``python3`` kernel, checked to start this interpreter (the venv's)."""
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name="python3")
    command = manager.format_kernel_cmd()
    assert Path(command[0]).resolve() == Path(sys.executable).resolve(), (command, sys.executable)
    return manager


def run_notebook(name: str, work_dir: Path) -> tuple[nbformat.NotebookNode, float]:
    """Execute ``name`` in ``work_dir``; returns the executed notebook and its wall time in seconds."""
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook,
        km=_kernel_manager(),
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(work_dir)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    print(f"{name}: {seconds:.1f} s")
    return notebook, seconds


def output_text(notebook: nbformat.NotebookNode) -> str:
    """Everything the code cells printed or displayed as text."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif "data" in output and "text/plain" in output.data:
                parts.append(output.data["text/plain"])
    return "\n".join(parts)


def displayed_images(notebook: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", [])
    )


def only_run(work_dir: Path) -> Path:
    runs = [path for path in (work_dir / "runs").iterdir() if path.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_finetune_notebook_trains_and_shows_the_run(tmp_path: Path) -> None:
    notebook, _ = run_notebook("01_finetune_your_data.ipynb", tmp_path)
    run_dir = only_run(tmp_path)
    for name in ("best.pt", "last.pt", "metrics.csv", "eval_val.json", "report.html", "plots/losses.png"):
        assert (run_dir / name).is_file(), name
    rows = metric_rows(run_dir)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert all(float(row["train/total_loss"]) > 0 for row in rows)
    assert json.loads((run_dir / "eval_val.json").read_text())["settings"]["num_images"] == 8
    text = output_text(notebook)
    assert "train: 16 images" in text and "val: 8 images" in text
    assert "mAP" in text and "Report:" in text
    assert displayed_images(notebook) >= 3  # losses, val metrics, precision-recall
    assert len(list((tmp_path / "my_dataset" / "Annotations").glob("*.xml"))) == 16 + 8
    assert not (NOTEBOOKS / "runs").exists() and not (NOTEBOOKS / "my_dataset").exists()


@pytest.mark.slow
def test_evaluate_compare_audit_notebook_measures_the_coco_weights(tmp_path: Path) -> None:
    notebook, _ = run_notebook("02_evaluate_compare_audit.ipynb", tmp_path)
    evaluation = json.loads((tmp_path / "evaluation_b" / "eval.json").read_text())
    # COCO-pretrained yolox-nano at 256 px on coco8 val: well above chance, below its 416 px figure.
    assert 0.2 < evaluation["metrics"]["mAP"] < 0.45, evaluation["metrics"]
    assert evaluation["errors"] and evaluation["recommended_conf"] > 0
    comparison = json.loads((tmp_path / "compare.json").read_text())
    assert comparison["verdict"]
    text = output_text(notebook)
    assert f"mAP {evaluation['metrics']['mAP']:.3f}" in text
    assert "Verdict:" in text
    audit = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert audit["informative"] and audit["num_images"] == 4 and audit["suggestions"]
    assert list((tmp_path / "audit" / "gallery").glob("*.png"))
    assert displayed_images(notebook) >= 3  # errors, confusion matrix, a gallery image


@pytest.mark.slow
def test_export_notebook_runs_the_onnx_file_at_the_checkpoints_map(tmp_path: Path) -> None:
    notebook, _ = run_notebook("03_export_and_benchmark.ipynb", tmp_path)
    assert (tmp_path / "export" / "yolox-nano_coco.onnx").is_file()
    assert (tmp_path / "export" / "yolox-nano_coco.int8.onnx").is_file()
    rows = {
        row["format"]: row
        for row in json.loads((tmp_path / "benchmark" / "benchmark.json").read_text())["rows"]
    }
    assert rows["pytorch"]["status"] == rows["onnx"]["status"] == "ok", rows
    assert rows["pytorch"]["mAP"] > 0.2
    assert rows["onnx"]["mAP"] == pytest.approx(rows["pytorch"]["mAP"], abs=1e-3)
    assert rows["onnx"]["latency_ms_median"] > 0 and rows["pytorch"]["latency_ms_median"] > 0
    text = output_text(notebook)
    difference = float(text.split("difference: ")[1].split()[0])
    assert difference <= 1e-3
    assert "onnx-int8" in text and "class_names" in text


@pytest.mark.slow
def test_plugin_notebook_shows_the_callback_and_metric_at_work(tmp_path: Path) -> None:
    notebook, _ = run_notebook("04_write_a_plugin.ipynb", tmp_path)
    run_dir = only_run(tmp_path)
    rows = metric_rows(run_dir)
    assert len(rows) == 2
    assert all(row["train/loss_drop"] not in ("", None) for row in rows)
    assert all(0 < float(row["val/mean_hit_score"]) <= 1 for row in rows)
    with open(run_dir / "loss_trace.csv", newline="") as file:
        trace = list(csv.DictReader(file))
    assert len(trace) == 4  # 4 training images at batch 2, 2 epochs, every batch recorded
    first_epoch = [float(row["total_loss"]) for row in trace if row["epoch"] == "0"]
    assert float(rows[0]["train/loss_drop"]) == pytest.approx(first_epoch[0] - first_epoch[-1], rel=1e-5)
    text = output_text(notebook)
    assert "loss_trace" in text and "mean_hit_score" in text
    assert "training.callbacks" in text  # the option error names the key
    assert displayed_images(notebook) >= 1
