"""The run report (``report.html``): escaping of hostile names and config values, sections that say what is
missing, ``yolox-sdk report`` rebuilding identical files, and the page of a real run opened in headless
Chromium through the DevTools protocol (no console message, every image decoded, a screenshot that is not
blank, no element or dialog from a hostile class name)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from test_training_plots import trained_run, write_metrics

from yolox_sdk.cli.main import cli
from yolox_sdk.config.loader import load_config
from yolox_sdk.engine.run_dir import write_run_config
from yolox_sdk.reporting.run_files import read_run_files
from yolox_sdk.reporting.run_report import report
from yolox_sdk.reporting.sections import OVERALL_METRICS

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_CONFIG = f"""model:
  name: "<script>alert('config')</script>"
data:
  train_path: "{HOSTILE}"
training:
  epochs: 2
"""
BROWSER_START_SECONDS = 30
PAGE_LOAD_SECONDS = 60
GENERATED = re.compile(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC")


class Tags(HTMLParser):
    """Every start tag of a document with its attributes, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    return parser


def hand_made_run(folder: Path, config_text: str = HOSTILE_CONFIG) -> Path:
    """A run directory with a config and two epochs of metrics, no evaluation, export or lineage."""
    write_metrics(folder, [[1, 9.0, 3.0, 0.001, 12.5, None, None], [2, 8.0, 2.5, 0.002, 13.0, 0.1, 0.2]])
    (folder / "config.yaml").write_text(config_text, encoding="utf-8")
    return folder


def hostile_evaluation(run_dir: Path, detections: int = 5) -> None:
    """eval_val.json and errors.json as run writes them, for a class named like an HTML element."""
    per_class = [{"class_name": HOSTILE, "category_id": 0, "AP": 0.25, "AP50": 0.5, "num_gt": 3}]
    content = {
        "metrics": {"mAP": 0.25, "mAP50": 0.5},
        "per_class": per_class,
        "settings": {
            "num_images": 2,
            "num_gt_boxes": 3,
            "num_detections": detections,
            "conf_threshold": 0.01,
        },
        "recommended": {"conf": 0.4, "f1": 0.5, "precision": 0.5, "recall": 0.5} if detections else None,
        "deploy_conf": 0.4,
    }
    (run_dir / "eval_val.json").write_text(json.dumps(content), encoding="utf-8")
    counts = {"classification": 1, "background": 2, "missed": 1}
    errors = {
        "all": {"AP50": 0.5, "true_positives": 2, "counts": counts, "ap50_gain": {"background": 0.1}},
        "per_class": {HOSTILE: {"counts": counts}},
    }
    (run_dir / "eval_val").mkdir()
    (run_dir / "eval_val" / "errors.json").write_text(json.dumps(errors), encoding="utf-8")


def test_hostile_class_names_and_config_values_render_as_text(tmp_path: Path) -> None:
    run_dir = hand_made_run(tmp_path / "run")
    hostile_evaluation(run_dir)
    html = report(run_dir).path.read_text(encoding="utf-8")
    assert HOSTILE not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;script&gt;alert(&#x27;config&#x27;)&lt;/script&gt;" in html
    document = parse(html)
    assert not [tag for tag, _ in document.tags if tag == "script"]
    images = [attributes for tag, attributes in document.tags if tag == "img"]
    assert images and all(attributes["src"].startswith("data:image/") for attributes in images)
    assert not [a for a in images if "onerror" in a]
    assert HOSTILE in "".join(document.text)  # the class name is shown, as text


def test_a_run_without_evaluation_export_or_lineage_says_so(tmp_path: Path) -> None:
    run_dir = hand_made_run(tmp_path / "run", "model:\n  name: yolox-nano\n")
    html = report(run_dir).path.read_text(encoding="utf-8")
    text = " ".join(" ".join(parse(html).text).split())
    assert text.count("No evaluation was run") == 5  # metrics, curves, confusion matrix, errors, gallery
    assert "Nothing was exported" in text
    assert "This run has no lineage.json" in text
    assert "No label statistics: the config names no training data (data.train_path)" in text
    assert "Best epoch 2: val/mAP 0.1000" in text


def test_a_model_that_predicts_nothing_is_said_plainly(tmp_path: Path) -> None:
    run_dir = hand_made_run(tmp_path / "run")
    hostile_evaluation(run_dir, detections=0)
    text = " ".join(parse(report(run_dir).path.read_text(encoding="utf-8")).text)
    assert "The model predicts nothing on the val split" in text
    assert "No recommended threshold: the model predicts nothing." in text


def test_best_epoch_of_a_lower_is_better_plugin_metric(tmp_path: Path) -> None:
    config = load_config(None, ["evaluation.metrics=[counting]", "evaluation.save_best_metric=count_mae"])
    header = ["epoch", "train/total_loss", "val/mAP", "val/count_mae"]
    run_dir = write_metrics(
        tmp_path / "run", [[1, 5.0, 0.1, 3.5], [2, 4.0, 0.2, 1.25], [3, 4.5, 0.3, 2.0]], header
    )
    write_run_config(run_dir, config)
    run = read_run_files(run_dir)
    assert (run.save_best_metric, run.lower_is_better) == ("count_mae", True)
    text = " ".join(parse(report(run_dir).path.read_text(encoding="utf-8")).text)
    assert "Best epoch 2: val/count_mae 1.2500" in text


@pytest.mark.parametrize("damaged", [5, "text", [1, 2], None, {"a": {"counts": 3}}])
def test_damaged_json_files_show_n_a_never_a_traceback(tmp_path: Path, damaged: object) -> None:
    run_dir = hand_made_run(tmp_path / "run", "model: {name: yolox-nano}\n")
    hostile_evaluation(run_dir)
    content = json.loads((run_dir / "eval_val.json").read_text())
    content.update(metrics=damaged, per_class=damaged, settings=damaged, recommended=damaged)
    (run_dir / "eval_val.json").write_text(json.dumps(content))
    errors = {"all": {"counts": damaged, "ap50_gain": damaged}, "per_class": {"x": damaged}}
    (run_dir / "eval_val" / "errors.json").write_text(json.dumps(errors))
    export = {"format": damaged, "path": damaged, "bytes": damaged, "max_abs_diff": damaged, "notes": damaged}
    (run_dir / "exports.json").write_text(json.dumps({"exports": [export]}))
    lineage = {"versions": damaged, "git": damaged, "parent": damaged, "dataset": {"train": damaged}}
    (run_dir / "lineage.json").write_text(json.dumps(lineage))
    document = parse(report(run_dir).path.read_text(encoding="utf-8"))
    assert len([tag for tag, _ in document.tags if tag == "section"]) == 10
    assert " ".join(document.text).count("n/a") >= len(OVERALL_METRICS)  # the metrics table, at least


def test_report_of_a_folder_that_is_no_run_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a run directory: it has no config.yaml" in result.output
    assert "Traceback" not in result.output
    (tmp_path / "config.yaml").write_text("model: {name: yolox-nano}\n")
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "has no metrics.csv" in result.output
    (tmp_path / "metrics.csv").write_bytes(b"epoch,loss\n1,\xff\xfe\n")
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert f"Cannot read {tmp_path / 'metrics.csv'}" in result.output and "Traceback" not in result.output


@pytest.fixture()
def real_run(tmp_path_factory: pytest.TempPathFactory, bccd_dir: Path) -> Path:
    return trained_run(tmp_path_factory, bccd_dir)


def rebuilt_content(run_dir: Path) -> dict[str, bytes]:
    files = {
        path.relative_to(run_dir).as_posix(): path.read_bytes() for path in (run_dir / "plots").iterdir()
    }
    files["report.html"] = GENERATED.sub("generated <time>", (run_dir / "report.html").read_text()).encode()
    return files


@pytest.mark.slow
def test_report_command_rebuilds_what_run_wrote(real_run: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(real_run, tmp_path / real_run.name)
    before = rebuilt_content(copy)
    result = CliRunner().invoke(cli, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    after = rebuilt_content(copy)
    assert sorted(after) == sorted(before)
    # the page names the run directory it was built from (the copy), everything else is identical
    after["report.html"] = after["report.html"].replace(str(copy).encode(), str(real_run).encode())
    assert {name: content for name, content in after.items() if content != before[name]} == {}


@pytest.mark.slow
def test_the_real_run_report_holds_its_numbers(real_run: Path) -> None:
    html = (real_run / "report.html").read_text(encoding="utf-8")
    text = " ".join(" ".join(parse(html).text).split())
    evaluation = json.loads((real_run / "eval_val.json").read_text())
    for row in evaluation["per_class"]:
        assert f"{row['class_name']} {row['AP']:.3f} {row['AP50']:.3f} {row['num_gt']}" in text
    export = json.loads((real_run / "exports.json").read_text())["exports"][0]
    onnx = real_run / "export" / "best.onnx"
    assert export["bytes"] == onnx.stat().st_size
    assert f"onnx {onnx} {onnx.stat().st_size / 1e6:.2f} MB {export['max_abs_diff']:.2e}" in text
    lineage = json.loads((real_run / "lineage.json").read_text())
    assert lineage["dataset"]["train"]["sha256"][:16] in text
    assert "No evaluation was run" not in text and "Nothing was exported" not in text


# ----- the page in a real browser -----------------------------------------------------------------------


def chromium_path() -> str:
    """The Chromium binary, installed with apt-get when missing and possible (CI runs as root on Debian)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=900, check=False
        )
        found = shutil.which("chromium")
    if found is None:
        pytest.skip(
            "Chromium is not installed and cannot be installed here (apt-get install -y chromium as root)."
        )
    return found


class Browser:
    """Headless Chromium driven through the DevTools protocol over its websocket."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.events: list[dict[str, Any]] = []
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.connection.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.connection.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = PAGE_LOAD_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not any(event.get("method") == method for event in self.events):
            assert time.monotonic() < deadline, f"no {method} within {timeout} s"
            self.events.append(json.loads(self.connection.recv()))

    def load(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"]["value"]

    def messages(self) -> list[str]:
        """Console calls, uncaught exceptions, log entries (CSP violations, failed loads) and dialogs."""
        kinds = (
            "Runtime.consoleAPICalled",
            "Runtime.exceptionThrown",
            "Log.entryAdded",
            "Page.javascriptDialogOpening",
        )
        return [json.dumps(event["params"])[:300] for event in self.events if event.get("method") in kinds]


@contextlib.contextmanager
def browser(tmp_path: Path) -> Iterator[Browser]:
    websocket = pytest.importorskip(
        "websocket", reason="websocket-client is in the dev extra: pip install -e '.[dev]'"
    )
    profile = tmp_path / "chromium-profile"
    command = [
        chromium_path(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + BROWSER_START_SECONDS
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert process.poll() is None and time.monotonic() < deadline, "Chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(target for target in json.load(response) if target["type"] == "page")
        connection = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=PAGE_LOAD_SECONDS, suppress_origin=True
        )
        try:
            driver = Browser(connection)
            for domain in ("Page", "Runtime", "Log"):
                driver.call(f"{domain}.enable")
            driver.call(
                "Emulation.setDeviceMetricsOverride",
                width=1280,
                height=2000,
                deviceScaleFactor=1,
                mobile=False,
            )
            yield driver
        finally:
            connection.close()
    finally:
        process.kill()
        process.wait(timeout=30)


IMAGE_CHECK = """JSON.stringify({
  images: document.images.length,
  broken: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length,
  hostile: document.querySelectorAll('img[src="x"], script').length,
  sections: document.querySelectorAll('section').length,
})"""


def screenshot(driver: Browser) -> np.ndarray:
    data = base64.b64decode(driver.call("Page.captureScreenshot", format="png")["data"])
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.slow
def test_the_report_of_a_real_run_in_headless_chromium(real_run: Path, tmp_path: Path) -> None:
    linked = tmp_path / "elsewhere" / "report.html"
    assert (
        CliRunner().invoke(cli, ["report", str(real_run), "--out", str(linked), "--link-images"]).exit_code
        == 0
    )
    hostile_run = hand_made_run(tmp_path / "hostile")
    hostile_evaluation(hostile_run)
    report(hostile_run)
    results = {}
    with browser(tmp_path) as driver:
        driver.load("data:text/html,<script>console.error('probe')</script>")
        assert any("probe" in message for message in driver.messages()), "console capture does not work"
        for page in (real_run / "report.html", linked, hostile_run / "report.html"):
            driver.load(page.as_uri())
            time.sleep(0.5)  # let the last images decode
            results[page] = json.loads(driver.evaluate(IMAGE_CHECK))
            assert driver.messages() == [], page
            image = screenshot(driver)
            assert image is not None and image.shape[1] == 1280 and image.std() > 20, page
    for page, checks in results.items():
        written = [attributes for tag, attributes in parse(page.read_text()).tags if tag == "img"]
        assert checks == {"images": len(written), "broken": 0, "hostile": 0, "sections": 10}, page
    assert results[linked]["images"] == results[real_run / "report.html"]["images"] >= 20
