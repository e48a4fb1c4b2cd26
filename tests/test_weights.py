"""Weight resolution (mirror, cache, download), class-count surgery and our checkpoint format."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from yolox_sdk.assets.download import download
from yolox_sdk.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint
from yolox_sdk.errors import CheckpointError, WeightsError
from yolox_sdk.models import create_model, model_from_checkpoint
from yolox_sdk.models.variants import PRETRAINED, PretrainedWeights
from yolox_sdk.models.weights import read_state_dict, resolve_weights


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server on 127.0.0.1 serving a temporary folder."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_offline_mirror_is_used_and_verified(nano_weights: Path) -> None:
    assert resolve_weights("yolox-nano") == nano_weights.resolve()


def test_download_from_local_server_then_cache_hit(
    http_root: tuple[Path, str], nano_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, url = http_root
    monkeypatch.delenv("YOLOX_SDK_ASSETS")
    shutil.copyfile(nano_weights, root / "yolox_nano.pth")
    data = (root / "yolox_nano.pth").read_bytes()
    fake = PretrainedWeights("yolox_nano.pth", hashlib.sha256(data).hexdigest(), len(data), 25.8)
    monkeypatch.setitem(PRETRAINED, "yolox-nano", fake)
    path = resolve_weights("yolox-nano", base_url=url)
    assert path.read_bytes() == data
    assert not list(path.parent.glob("*.part"))
    (root / "yolox_nano.pth").unlink()  # a second resolution must not touch the network
    assert resolve_weights("yolox-nano", base_url=url) == path


def test_sha_mismatch_in_cache_removes_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("YOLOX_SDK_ASSETS")
    from yolox_sdk.assets.catalog import cache_home

    bad = cache_home() / "weights" / PRETRAINED["yolox-s"].file
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match="expected f55ded71") as error:
        resolve_weights("yolox-s")
    assert "removed" in str(error.value)
    assert not bad.exists()


def test_download_with_wrong_sha_leaves_nothing(http_root: tuple[Path, str], tmp_path: Path) -> None:
    root, url = http_root
    (root / "file.bin").write_bytes(b"x" * 1000)
    dest = tmp_path / "cache" / "file.bin"
    with pytest.raises(WeightsError, match="sha256"):
        download(f"{url}/file.bin", dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not list(dest.parent.glob("*"))


def test_download_unreachable_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="Cannot download"):
        download("http://127.0.0.1:9/none.pth", tmp_path / "none.pth", progress=False)


def test_unknown_weights_name() -> None:
    with pytest.raises(WeightsError, match="neither a file nor a known name"):
        resolve_weights("yolox-huge")


def test_class_count_surgery_on_real_checkpoint(nano_weights: Path) -> None:
    model, spec, report = create_model("yolox-nano", num_classes=3, pretrained=str(nano_weights))
    assert spec.num_classes == 3
    assert report.total == len(model.state_dict())
    assert report.transferred == report.total - 6
    assert set(report.reinitialised) == {
        f"head.cls_preds.{i}.{p}" for i in range(3) for p in ("weight", "bias")
    }
    assert "transferred 636/642 tensors, reinitialised: head.cls_preds.0.bias" in report.summary()
    official, _ = read_state_dict(nano_weights)
    own = model.state_dict()
    assert torch.equal(own["head.reg_preds.0.weight"], official["head.reg_preds.0.weight"])
    # new class biases use YOLOX's prior-probability init: sigmoid(bias) == 0.01
    assert torch.allclose(torch.sigmoid(own["head.cls_preds.0.bias"]), torch.full((3,), 0.01), atol=1e-6)


@pytest.mark.parametrize("pretrained", [True, "yolox-nano"])
def test_training_and_create_model_load_weights_the_same_way(pretrained: bool | str) -> None:
    """One path for weights: a training run's ``model.pretrained`` and ``create_model`` give the same network."""
    from yolox_sdk.config.schema import Config, ModelConfig
    from yolox_sdk.engine.setup import build_training_model
    from yolox_sdk.models.variants import make_spec

    spec = make_spec("yolox-nano", 3, input_size=(160, 160))
    config = Config(model=ModelConfig(name="yolox-nano", pretrained=pretrained, input_size=(160, 160)))
    torch.manual_seed(0)
    trained, training_report = build_training_model(config, spec)
    torch.manual_seed(0)
    created, _, created_report = create_model("yolox-nano", 3, pretrained=pretrained, input_size=(160, 160))
    assert training_report == created_report and training_report.source is not None
    own, other = trained.state_dict(), created.state_dict()
    assert own.keys() == other.keys() and all(torch.equal(own[name], other[name]) for name in own)


def test_weights_of_another_variant_are_refused(nano_weights: Path) -> None:
    with pytest.raises(CheckpointError, match="another variant"):
        create_model("yolox-s", num_classes=3, pretrained=str(nano_weights))


def test_checkpoint_round_trip_with_class_names(tmp_path: Path, nano_weights: Path) -> None:
    model, spec, _ = create_model("yolox-nano", num_classes=3, pretrained=str(nano_weights))
    names = ("RBC", "WBC", "Platelets")
    path = save_checkpoint(tmp_path / "best.pt", Checkpoint(model.state_dict(), spec, names, config={"a": 1}))
    loaded = load_checkpoint(path)
    assert loaded.class_names == names and loaded.spec == spec and loaded.config == {"a": 1}
    assert loaded.sdk_version
    rebuilt = model_from_checkpoint(loaded)
    image = torch.rand(1, 3, 416, 416) * 255
    model.eval()
    with torch.no_grad():
        assert torch.allclose(rebuilt(image), model(image))
    assert not list(tmp_path.glob("*.tmp"))


def test_truncated_and_foreign_checkpoints(tmp_path: Path, nano_weights: Path) -> None:
    model, spec, _ = create_model("yolox-nano", num_classes=3)
    path = save_checkpoint(tmp_path / "last.pt", Checkpoint(model.state_dict(), spec, ("a", "b", "c")))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="not a yolox-sdk checkpoint"):
        load_checkpoint(nano_weights)
