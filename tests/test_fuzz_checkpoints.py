"""Hostile checkpoint files through the commands that load them: never a traceback or a "bug" message, always
a clear error (exit 1) in bounded time.

The cases start from a real checkpoint (yolox-nano, BCCD's 3 classes, 160 px) and damage it the ways files
get damaged or forged: truncated at every 10 % of its length, bytes flipped, random bytes, and structurally
wrong content that unpickles fine (wrong types, missing keys, absurd model specs that would build a huge
network, weights of the wrong shapes). Each goes through ``predict``, ``export`` and ``train
model.pretrained=``; the count of cases and of clean outcomes is printed (run with ``-s`` to see it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import ASSETS

from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.models.factory import build_model
from yolox_sdk.models.variants import make_spec

SECONDS_PER_CASE = 60  # generous on a shared 2-core machine: catches hangs, not slowness
SPEC = make_spec("yolox-nano", num_classes=3, input_size=(160, 160))
NAMES = ["Platelets", "RBC", "WBC"]
IMAGE = ASSETS / "datasets" / "coco8" / "images" / "val" / "000000000036.jpg"


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = build_model(SPEC).state_dict()
    return save_checkpoint(
        tmp_path_factory.mktemp("real") / "real.pt",
        Checkpoint(model=state, ema=state, spec=SPEC, class_names=tuple(NAMES)),
    )


def _payload(**changes: Any) -> dict[str, Any]:
    """A checkpoint payload without a digest (files without one load, so only the structure checks stop them)."""
    state = build_model(SPEC).state_dict()
    payload: dict[str, Any] = {
        "format": "yolox-sdk-checkpoint",
        "format_version": 1,
        "model": state,
        "ema": state,
        "meta": {"spec": attrs.asdict(SPEC), "class_names": list(NAMES), "config": {}, "sdk_version": "0"},
        "training_state": {},
    }
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = payload
        for parent in parents:
            target = target[parent]
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value
    return payload


_DELETE = object()


def _with_wrong_shape() -> dict[str, torch.Tensor]:
    state = dict(build_model(SPEC).state_dict())
    state["head.cls_preds.0.weight"] = torch.zeros(7, 1, 1, 1)
    return state


STRUCTURAL: dict[str, Callable[[], Any]] = {
    "a list": lambda: [1, 2, 3],
    "a string": lambda: "checkpoint",
    "None": lambda: None,
    "format only": lambda: {"format": "yolox-sdk-checkpoint"},
    "meta missing": lambda: _payload(meta=_DELETE),
    "meta a list": lambda: _payload(meta=[1]),
    "spec missing": lambda: _payload(meta__spec=_DELETE),
    "spec a string": lambda: _payload(meta__spec="yolox-nano"),
    "spec field missing": lambda: _payload(meta__spec={"name": "yolox-nano", "depth": 0.33}),
    "spec extra field": lambda: _payload(meta__spec={**attrs.asdict(SPEC), "evil": 1}),
    "depth a string": lambda: _payload(meta__spec={**attrs.asdict(SPEC), "depth": "deep"}),
    "depth infinite": lambda: _payload(meta__spec={**attrs.asdict(SPEC), "depth": float("inf")}),
    "width huge": lambda: _payload(meta__spec={**attrs.asdict(SPEC), "width": 1e6}),
    "num_classes negative": lambda: _payload(meta__spec={**attrs.asdict(SPEC), "num_classes": -3}),
    "num_classes 10**12": lambda: _payload(meta__spec={**attrs.asdict(SPEC), "num_classes": 10**12}),
    "input_size huge": lambda: _payload(meta__spec={**attrs.asdict(SPEC), "input_size": (10**9, 160)}),
    "input_size infinite": lambda: _payload(
        meta__spec={**attrs.asdict(SPEC), "input_size": (float("inf"), 1)}
    ),
    "input_size a string": lambda: _payload(meta__spec={**attrs.asdict(SPEC), "input_size": "ab"}),
    "input_size one number": lambda: _payload(meta__spec={**attrs.asdict(SPEC), "input_size": 160}),
    "act unknown": lambda: _payload(meta__spec={**attrs.asdict(SPEC), "act": "gelu"}),
    "depthwise a string": lambda: _payload(meta__spec={**attrs.asdict(SPEC), "depthwise": "yes"}),
    "class names too few": lambda: _payload(meta__class_names=["RBC"]),
    "class names not strings": lambda: _payload(meta__class_names=[1, 2, 3]),
    "class names a string": lambda: _payload(meta__class_names="abc"),
    "model a list": lambda: _payload(model=[torch.zeros(1)], ema=None),
    "model values not tensors": lambda: _payload(model={"w": 1.0}, ema=None),
    "model empty": lambda: _payload(model={}, ema=None),
    "ema a string": lambda: _payload(ema="weights"),
    "weights of the wrong shape": lambda: _payload(model=_with_wrong_shape(), ema=_with_wrong_shape()),
    "training_state a list": lambda: _payload(training_state=[1]),
    "official style, model not a state dict": lambda: {"model": {"layer": "not a tensor"}},
    "official style, empty": lambda: {},
}


def _damaged_files(real: Path, folder: Path) -> dict[str, Path]:
    data = real.read_bytes()
    cases: dict[str, bytes] = {
        f"truncated at {percent}%": data[: len(data) * percent // 100] for percent in range(0, 100, 10)
    }
    rng = np.random.default_rng(0)
    for position in rng.integers(0, len(data), 8):
        flipped = bytearray(data)
        flipped[position : position + 16] = bytes(255 - value for value in flipped[position : position + 16])
        cases[f"16 bytes inverted at {position}"] = bytes(flipped)
    for size in (1, 100, 100_000):
        cases[f"{size} random bytes"] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    cases["a zip that is not a checkpoint"] = _zip_bytes(folder)
    paths = {}
    for index, (name, content) in enumerate(cases.items()):
        paths[name] = folder / f"damaged-{index}.pt"
        paths[name].write_bytes(content)
    for index, (name, build) in enumerate(STRUCTURAL.items()):
        paths[name] = folder / f"structural-{index}.pt"
        torch.save(build(), paths[name])
    return paths


def _zip_bytes(folder: Path) -> bytes:
    import zipfile

    path = folder / "plain.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.pkl", b"not a pickle")
    return path.read_bytes()


def _commands(path: Path, tmp_path: Path) -> dict[str, list[str]]:
    return {
        "predict": ["predict", str(path), str(IMAGE), "--out", str(tmp_path / "predictions")],
        "export": ["export", str(path), "--out", str(tmp_path / "export"), "--sample", str(IMAGE)],
        "train model.pretrained": [
            "train",
            "/dev/null",
            "model.name=yolox-nano",
            f"model.pretrained={path}",
            "data.train_path=coco8",
            "training.epochs=1",
            f"monitoring.output_dir={tmp_path / 'runs'}",
        ],
    }


# Structural cases that leave the weights themselves readable: model.pretrained reads only the weights (and
# re-initialises tensors whose shapes differ), so for it these files are usable starting points, not damage.
_WEIGHTS_INTACT = {
    name
    for name in STRUCTURAL
    if "spec" in name
    or "class names" in name
    or name.startswith(
        (
            "depth",
            "width",
            "num_classes",
            "input_size",
            "act",
            "meta",
            "training_state",
            "weights of the wrong shape",
        )
    )
}


def _damages_the_weights(case: str) -> bool:
    return case not in _WEIGHTS_INTACT and not case.startswith("16 bytes inverted")


def _is_clean(result: Any, seconds: float, may_succeed: bool) -> bool:
    """Refused with our error (exit 1), or, for a flip in bytes nothing reads (zip padding), a normal run."""
    output = result.output
    refused = result.exit_code == 1 and "Error: " in output
    return (
        (refused or (may_succeed and result.exit_code == 0))
        and "Traceback" not in output
        and "bug in yolox-sdk" not in output
        and "Unexpected error" not in output
        and seconds < SECONDS_PER_CASE
    )


@pytest.mark.slow
def test_hostile_checkpoints_are_refused_cleanly_everywhere(
    real_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
    files = _damaged_files(real_checkpoint, tmp_path)
    outcomes = []
    for case, path in files.items():
        for command, arguments in _commands(path, tmp_path).items():
            if command == "train model.pretrained" and not _damages_the_weights(case):
                continue
            start = time.perf_counter()
            result = CliRunner().invoke(cli, arguments)
            seconds = time.perf_counter() - start
            clean = _is_clean(result, seconds, may_succeed=case.startswith("16 bytes inverted"))
            outcomes.append((case, command, clean, result.exit_code, result.output[-300:]))
    failures = [outcome for outcome in outcomes if not outcome[2]]
    print(
        f"\nhostile checkpoints: {len(outcomes)} cases ({len(files)} files, 2-3 commands each), "
        f"{len(outcomes) - len(failures)} clean"
    )
    assert not failures, "\n".join(
        f"{case} / {command}: exit {code}: {output}" for case, command, _, code, output in failures
    )


def test_the_undamaged_checkpoint_still_works(real_checkpoint: Path, tmp_path: Path) -> None:
    """The fuzz baseline: the same commands succeed on the real file, so the refusals above are about damage."""
    result = CliRunner().invoke(cli, _commands(real_checkpoint, tmp_path)["predict"])
    assert result.exit_code == 0, result.output
