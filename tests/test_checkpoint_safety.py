"""Checkpoints from strangers never run code: every entry point that loads a ``.pt``/``.pth`` refuses a pickle
that carries a payload, before any of it runs.

The payload is real: unpickling it with the unrestricted loader runs ``touch MARKER`` (checked first, so the
test proves its own bait works). The forged checkpoint even carries a valid content sha256 (computed over what
the payload unpickles to), so the digest check alone would have let it through.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import attrs
import pytest
import torch
from click.testing import CliRunner
from conftest import ASSETS

from yolox_sdk.checkpoints.format import DIGEST_KEY, FORMAT_NAME, FORMAT_VERSION, payload_digest
from yolox_sdk.checkpoints.torch_files import load_torch_file
from yolox_sdk.cli.main import cli
from yolox_sdk.config.loader import dump_config, load_config
from yolox_sdk.errors import CheckpointError
from yolox_sdk.models.factory import build_model
from yolox_sdk.models.variants import make_spec

PACKAGE = Path(__file__).resolve().parents[1] / "yolox_sdk"


class Payload:
    """Unpickles to ``os.system(command)``: what an attacker hides in a checkpoint."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "MARKER"


def nano_state() -> dict[str, torch.Tensor]:
    return build_model(make_spec("yolox-nano", num_classes=3, input_size=(160, 160))).state_dict()


def forged_checkpoint(path: Path, marker: Path) -> Path:
    """A yolox-sdk checkpoint of real nano weights whose metadata hides the payload; digest made valid."""
    spec = make_spec("yolox-nano", num_classes=3, input_size=(160, 160))
    state = nano_state()
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": state,
        "ema": state,
        "meta": {
            "spec": attrs.asdict(spec),
            "class_names": ["Platelets", "RBC", "WBC"],
            "config": {},
            "sdk_version": "0",
            "lineage": {"note": 0},
        },
        "training_state": {},
    }
    payload[DIGEST_KEY] = payload_digest(payload)  # os.system returns 0: the digest of the loaded file
    payload["meta"]["lineage"]["note"] = Payload(f"touch {marker}")
    torch.save(payload, path)
    return path


def official_style_weights(path: Path, marker: Path) -> Path:
    """An official-looking ``{"model": state_dict}`` file with the payload beside the weights."""
    torch.save({"model": nano_state(), "start_epoch": Payload(f"touch {marker}")}, path)
    return path


def test_the_payload_runs_when_unpickled_without_restrictions(tmp_path: Path, marker: Path) -> None:
    path = forged_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_load_torch_file_refuses_the_payload_and_names_it(tmp_path: Path, marker: Path) -> None:
    path = forged_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(
        CheckpointError, match=r"Refused to load .*evil\.pt.*'posix\.system'.*Nothing from it"
    ):
        load_torch_file(path)
    assert not marker.exists()


def _torch_load_calls(path: Path) -> list[ast.Call]:
    """Calls of ``torch.load`` (or of a bare ``load`` imported from torch) in ``path``'s code, not its prose."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "torch"
        and any(a.name == "load" for a in node.names)
        for node in ast.walk(tree)
    )
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and ast.unparse(node.func.value) == "torch"
            )
            or (imported and isinstance(node.func, ast.Name) and node.func.id == "load")
        )
    ]


def test_every_torch_load_goes_through_the_restricted_loader() -> None:
    """One place calls ``torch.load`` (and always with ``weights_only=True``): a new call elsewhere fails here."""
    calls = {path.relative_to(PACKAGE).as_posix(): _torch_load_calls(path) for path in PACKAGE.rglob("*.py")}
    callers = sorted(name for name, found in calls.items() if found)
    assert callers == ["checkpoints/torch_files.py"]
    for call in calls["checkpoints/torch_files.py"]:
        keywords = {keyword.arg: ast.unparse(keyword.value) for keyword in call.keywords}
        assert keywords.get("weights_only") == "True"


def _train_overrides(output_dir: Path, *extra: str) -> list[str]:
    return [
        "model.input_size=[160,160]",
        "data.train_path=bccd",
        "data.train_split=val",
        "data.val_path=bccd",
        "data.val_split=test",
        "data.num_workers=0",
        "training.epochs=1",
        "monitoring.progress_bar=false",
        "monitoring.tensorboard=false",
        f"monitoring.output_dir={output_dir}",
        *extra,
    ]


def _run_dir_with(tmp_path: Path, name: str, evil: Path) -> Path:
    """A run directory (config.yaml + checkpoint) whose checkpoint ``name`` is the forged file."""
    run_dir = tmp_path / "runs" / "victim"
    run_dir.mkdir(parents=True)
    config = load_config(None, _train_overrides(tmp_path / "runs"))
    (run_dir / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    (run_dir / name).write_bytes(evil.read_bytes())
    return run_dir


def _commands(tmp_path: Path, marker: Path) -> dict[str, list[str]]:
    evil = forged_checkpoint(tmp_path / "evil.pt", marker)
    official = official_style_weights(tmp_path / "official.pth", marker)
    image = next((ASSETS / "datasets" / "coco8" / "images" / "val").iterdir())
    config = tmp_path / "config.yaml"
    config.write_text(dump_config(load_config(None, _train_overrides(tmp_path / "out"))), encoding="utf-8")
    return {
        "eval": ["eval", str(evil), "--data", "bccd", "--split", "test"],
        "predict": ["predict", str(evil), str(image), "--out", str(tmp_path / "pred")],
        "export": ["export", str(evil), "--out", str(tmp_path / "export")],
        "resume": ["train", str(config), "--resume", str(_run_dir_with(tmp_path / "a", "last.pt", evil))],
        "from-best": [
            "train",
            str(config),
            "--from-best",
            str(_run_dir_with(tmp_path / "b", "best.pt", evil)),
        ],
        "model.checkpoint": ["train", str(config), f"model.checkpoint={evil}"],
        "model.pretrained (ours)": ["train", str(config), f"model.pretrained={evil}"],
        "model.pretrained (official format)": ["train", str(config), f"model.pretrained={official}"],
        "model.checkpoint (official format)": ["train", str(config), f"model.checkpoint={official}"],
    }


@pytest.mark.parametrize(
    "entry_point",
    [
        "eval",
        "predict",
        "export",
        "resume",
        "from-best",
        "model.checkpoint",
        "model.pretrained (ours)",
        "model.pretrained (official format)",
        "model.checkpoint (official format)",
    ],
)
def test_no_entry_point_runs_the_payload(
    entry_point: str, tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
    arguments = _commands(tmp_path, marker)[entry_point]
    result = CliRunner().invoke(cli, arguments)
    assert not marker.exists(), f"{entry_point}: the payload ran"
    assert result.exit_code == 1, result.output
    assert "posix.system" in result.output and "Nothing from it was executed" in result.output
    assert "Traceback" not in result.output and "bug" not in result.output
