"""Structured pruning (``yolox-sdk prune``) on the real COCO yolox-nano, with coco8 as data.

The pruned file must be an ordinary checkpoint: it reloads (in a fresh process, without torch-pruning)
as the network that was pruned in memory, and ``eval``, ``predict``, ``export`` and ``train`` use it.
Parameter counts are checked against a plain ``numel`` sum, not against the code under test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import ASSETS

from yolox_sdk.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.config.loader import config_to_dict, load_config
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.errors import CheckpointError, ConfigError
from yolox_sdk.models import create_model, make_spec, model_from_checkpoint
from yolox_sdk.models.factory import build_model
from yolox_sdk.models.weights import load_initial_weights
from yolox_sdk.optimization import prune
from yolox_sdk.optimization.pruning import count_macs_and_params, prune_network
from yolox_sdk.yaml_files import dump_yaml

SIZE = 160
COCO8_VAL = ["--data", "coco8", "--split", "val", "--format", "yolo", "--device", "cpu"]
PREDICTIONS = {"head.cls_preds": 80, "head.reg_preds": 4, "head.obj_preds": 1}


def coco8_config(runs: Path) -> dict:
    """The cheapest real run config: yolox-nano at 160 px, coco8 train -> val, one epoch."""
    overrides = [
        "model.name=yolox-nano",
        f"model.input_size=[{SIZE},{SIZE}]",
        "data.train_path=coco8",
        "data.train_split=train",
        "data.val_path=coco8",
        "data.val_split=val",
        "data.format=yolo",
        "data.batch_size=4",
        "training.epochs=1",
        "training.no_aug_epochs=0",
        "training.warmup_epochs=0",
        "monitoring.progress_bar=false",
        f"monitoring.output_dir={runs}",
    ]
    return config_to_dict(load_config(None, overrides))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The COCO nano as a coco8 checkpoint, and that checkpoint pruned 30 % (uniform, L2) by the API."""
    folder = tmp_path_factory.mktemp("pruning")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
        patch.setenv("YOLOX_SDK_HOME", str(folder / "home"))
        model, spec, _ = create_model("yolox-nano", 80, pretrained=True, input_size=(SIZE, SIZE))
        names = load_dataset("coco8", split="val", format="yolo").class_names
        config = coco8_config(folder / "runs")
        source = save_checkpoint(
            folder / "nano.pt", Checkpoint(model.state_dict(), spec, names, config=config)
        )
        result = prune(source, 0.3, scope="uniform", latency_runs=3)
    return {"folder": folder, "source": source, "pruned": result.output, "result": result}


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_pruning_30_percent_halves_parameters_and_macs_and_keeps_the_head_outputs(files: dict) -> None:
    result = files["result"]
    assert files["pruned"] == files["source"].with_name("nano.pruned.pt")
    original = model_from_checkpoint(load_checkpoint(files["source"]))
    pruned = model_from_checkpoint(load_checkpoint(files["pruned"]))
    assert result.before.params == parameter_count(original) == 912_159  # yolox-nano, 80 classes
    assert result.after.params == parameter_count(pruned)
    # 30 % of the channels on both sides of most convolutions: about (1 - 0.3)^2 of the weights remain.
    assert 0.42 < result.after.params / result.before.params < 0.56
    assert 0.42 < result.after.macs / result.before.macs < 0.6
    assert (result.after.macs, result.after.params) == count_macs_and_params(pruned, (SIZE, SIZE))
    assert 0.28 < result.ratio < 0.34
    for prefix, outputs in PREDICTIONS.items():
        for level in range(3):
            assert pruned.get_submodule(f"{prefix}.{level}").out_channels == outputs
    assert pruned(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 525, 85)  # (20^2 + 10^2 + 5^2) anchors
    for figures in (result.before, result.after):
        assert figures.latency_ms > 0 and figures.threads == torch.get_num_threads()
    assert result.before.map > 0.2  # the COCO nano on coco8 val
    assert result.after.map < result.before.map  # pruning without recovery costs accuracy
    record = load_checkpoint(files["pruned"]).pruning
    assert record["method"] == "l2" and record["scope"] == "uniform"
    assert record["params_after"] == result.after.params and record["source"] == str(files["source"])


def test_pruned_file_reloads_in_a_fresh_process_as_the_network_pruned_in_memory(
    files: dict, tmp_path: Path
) -> None:
    checkpoint = load_checkpoint(files["source"])
    model = model_from_checkpoint(checkpoint)
    prune_network(model, (SIZE, SIZE), 0.3, "l2", "global")
    path = save_checkpoint(
        tmp_path / "pruned.pt", Checkpoint(model.state_dict(), checkpoint.spec, checkpoint.class_names)
    )
    batch = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    torch.save(batch, tmp_path / "batch.pt")
    script = (
        "import sys, torch\n"
        "from yolox_sdk.checkpoints.format import load_checkpoint\n"
        "from yolox_sdk.models import model_from_checkpoint\n"
        f"model = model_from_checkpoint(load_checkpoint({str(path)!r}))\n"
        f"batch = torch.load({str(tmp_path / 'batch.pt')!r}, weights_only=True)\n"
        f"torch.save(model(batch).detach(), {str(tmp_path / 'out.pt')!r})\n"
        "assert 'torch_pruning' not in sys.modules, 'loading imported torch_pruning'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    with torch.no_grad():
        expected = model.eval()(batch)
    assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True), expected)


def test_eval_predict_and_onnx_export_use_the_pruned_checkpoint(files: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    evaluated = runner.invoke(
        cli, ["eval", str(files["pruned"]), *COCO8_VAL, "--out", str(tmp_path / "eval.json")]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "mAP" in evaluated.output
    images = ASSETS / "datasets" / "coco8" / "images" / "val"
    predicted = runner.invoke(
        cli,
        ["predict", str(files["pruned"]), str(images), "--out", str(tmp_path / "pred"), "--device", "cpu"],
    )
    assert predicted.exit_code == 0, predicted.output
    assert any((tmp_path / "pred").iterdir())
    exported = runner.invoke(
        cli, ["export", str(files["pruned"]), "--format", "onnx", "--out", str(tmp_path / "onnx")]
    )
    assert exported.exit_code == 0, exported.output
    assert "max abs diff vs PyTorch" in exported.output
    assert (tmp_path / "onnx" / "model.onnx").is_file() or list((tmp_path / "onnx").glob("*.onnx"))


@pytest.mark.slow
def test_training_from_the_pruned_checkpoint_keeps_the_pruned_shapes(files: dict, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(dump_yaml(coco8_config(tmp_path / "runs")), encoding="utf-8")
    trained = CliRunner().invoke(
        cli, ["train", str(config), f"model.checkpoint={files['pruned']}", "monitoring.run_name=recovery"]
    )
    assert trained.exit_code == 0, trained.output
    pruned = load_checkpoint(files["pruned"]).model
    last = load_checkpoint(tmp_path / "runs" / "recovery" / "last.pt")
    for state in (last.model, last.ema):
        assert {name: tensor.shape for name, tensor in state.items()} == {
            name: tensor.shape for name, tensor in pruned.items()
        }
    assert any(not torch.equal(last.model[name], pruned[name]) for name in pruned)  # it did train
    # Resume rebuilds the pruned network from the run's config (model.checkpoint) and loads last.pt,
    # optimizer state included, into it: a full-size network would refuse every tensor.
    resumed = CliRunner().invoke(cli, ["train", str(config), "--resume", str(tmp_path / "runs" / "recovery")])
    assert resumed.exit_code == 0, resumed.output
    evaluated = CliRunner().invoke(cli, ["eval", str(tmp_path / "runs" / "recovery" / "best.pt"), *COCO8_VAL])
    assert evaluated.exit_code == 0, evaluated.output


@pytest.mark.parametrize("ratio", ["0", "1", "-0.1", "1.5"])
def test_a_ratio_outside_0_1_is_refused_and_nothing_is_written(
    files: dict, ratio: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.pt"
    result = CliRunner().invoke(cli, ["prune", str(files["source"]), "--ratio", ratio, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "strictly between 0 and 1" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_an_existing_output_or_the_input_itself_is_never_overwritten(files: dict) -> None:
    before = files["pruned"].read_bytes()
    with pytest.raises(ConfigError, match="already exists.*--force"):
        prune(files["source"], 0.3)  # the default output, written by the fixture
    assert files["pruned"].read_bytes() == before
    with pytest.raises(ConfigError, match="would replace its input"):
        prune(files["source"], 0.3, out=files["source"], force=True)


def test_a_checkpoint_already_pruned_past_the_ratio_is_refused(files: dict, tmp_path: Path) -> None:
    out = tmp_path / "again.pt"
    result = CliRunner().invoke(cli, ["prune", str(files["pruned"]), "--ratio", "0.3", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "already pruned" in result.output and "ratio above" in result.output
    assert not out.exists()
    with pytest.raises(ConfigError, match="taylor_batches"):
        prune(files["pruned"], 0.6, out=out, taylor_batches=0)
    assert not out.exists()


def test_weights_that_are_no_pruned_version_of_their_spec_are_refused(files: dict, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(files["pruned"])
    grown = dict(checkpoint.model)
    name = "backbone.backbone.stem.conv.conv.weight"
    grown[name] = torch.zeros(64, *grown[name].shape[1:])  # more channels than yolox-nano's stem has
    path = save_checkpoint(tmp_path / "grown.pt", Checkpoint(grown, checkpoint.spec, checkpoint.class_names))
    with pytest.raises(CheckpointError, match=f"{re.escape(str(path))}.*stem.*pruning only removes channels"):
        model_from_checkpoint(load_checkpoint(path))
    cut = dict(checkpoint.model)
    name = "backbone.backbone.dark2.0.pconv.conv.weight"
    cut[name] = cut[name][:-1]  # its BatchNorm and the next layer still expect the removed channel
    path = save_checkpoint(tmp_path / "cut.pt", Checkpoint(cut, checkpoint.spec, checkpoint.class_names))
    with pytest.raises(CheckpointError, match="cut.pt"):
        model_from_checkpoint(load_checkpoint(path))


def test_a_narrower_variant_is_not_taken_for_a_pruned_one(tmp_path: Path) -> None:
    tiny, spec, _ = create_model("yolox-tiny", 3, input_size=(SIZE, SIZE))
    path = save_checkpoint(tmp_path / "tiny.pt", Checkpoint(tiny.state_dict(), spec, ("a", "b", "c")))
    wider = build_model(make_spec("yolox-s", 3, input_size=(SIZE, SIZE)))
    with pytest.raises(CheckpointError, match="another variant"):
        load_initial_weights(wider, str(path), "yolox-s")


@pytest.mark.slow
def test_taylor_importance_reaches_a_parameter_target(files: dict, tmp_path: Path) -> None:
    target = 600_000
    result = prune(
        files["source"],
        method="taylor",
        taylor_batches=1,
        target_params=target,
        out=tmp_path / "taylor.pt",
        evaluate=False,
        latency_runs=0,
    )
    reloaded = model_from_checkpoint(load_checkpoint(result.output))
    assert 0.95 * target < parameter_count(reloaded) == result.after.params <= target
    assert load_checkpoint(result.output).pruning["requested"]["target_params"] == target


def test_a_pruned_checkpoint_starts_a_model_of_another_class_count(files: dict) -> None:
    model = build_model(make_spec("yolox-nano", 3, input_size=(SIZE, SIZE)))
    report = load_initial_weights(model, str(files["pruned"]), "yolox-nano")
    pruned = load_checkpoint(files["pruned"]).model
    for level in range(3):
        predictor = model.head.cls_preds[level]
        assert predictor.out_channels == 3
        assert predictor.in_channels == pruned[f"head.cls_preds.{level}.weight"].shape[1]
        assert torch.allclose(predictor.bias, torch.full((3,), -4.59512))  # YOLOX's prior, log(0.01 / 0.99)
    assert set(report.reinitialised) == {
        f"head.cls_preds.{i}.{kind}" for i in range(3) for kind in ("weight", "bias")
    }
    stem = "backbone.backbone.stem.conv.conv.weight"
    assert torch.equal(model.state_dict()[stem], pruned[stem])
    assert model.eval()(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 525, 8)


def _nano_and_graph() -> tuple[torch.nn.Module, object, list]:
    import torch_pruning as tp

    from yolox_sdk.optimization.pruning import _protected

    model, _, _ = create_model("yolox-nano", 80, pretrained=True, input_size=(SIZE, SIZE))
    model.eval()
    graph = tp.DependencyGraph().build_dependency(model, torch.zeros(1, 3, SIZE, SIZE))
    groups = list(graph.get_all_groups(ignored_layers=_protected(model), root_module_types=[torch.nn.Conv2d]))
    return model, graph, groups


def test_silencing_a_groups_channels_computes_what_pruning_them_computes(monkeypatch) -> None:
    """Sensitivity measures each group's loss with its channels silenced instead of removed: that is only
    sound if the two networks compute the same thing, which is checked here on every fifth group."""
    import copy

    import torch_pruning as tp

    from yolox_sdk.optimization.sensitivity import _silenced

    monkeypatch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
    model, graph, groups = _nano_and_graph()
    names = {module: name for name, module in model.named_modules()}
    batch = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        unchanged = model(batch)
    for group in groups[::5]:
        root = group[0].dep.target.module
        channels = list(range(0, root.out_channels, 3))  # a third of them, spread over the layer
        with _silenced(graph.get_pruning_group(root, tp.prune_conv_out_channels, channels)), torch.no_grad():
            silenced = model(batch)
        pruned = copy.deepcopy(model)
        pruned_graph = tp.DependencyGraph().build_dependency(pruned, torch.zeros(1, 3, SIZE, SIZE))
        pruned_root = pruned.get_submodule(names[root])
        pruned_graph.get_pruning_group(pruned_root, tp.prune_conv_out_channels, channels).prune()
        with torch.no_grad():
            removed = pruned(batch)
        assert pruned_root.out_channels == root.out_channels - len(channels)
        assert not torch.allclose(silenced, unchanged, atol=1e-3), names[root]  # the channels did matter
        torch.testing.assert_close(silenced, removed, rtol=1e-4, atol=2e-3, msg=names[root])
    with torch.no_grad():
        assert torch.equal(model(batch), unchanged)  # every silenced tensor was restored


def test_allocation_takes_the_cheapest_loss_per_channel_first() -> None:
    from yolox_sdk.optimization.sensitivity import LEVELS, GroupCurve, allocate

    def curve(root: str, channels: int, outputs: int, costs: list[float], macs: float = 1.0) -> GroupCurve:
        padded = costs + [costs[-1]] * (len(LEVELS) - len(costs))
        return GroupCurve(root, channels, (outputs, 10.0, macs), tuple(range(channels)), tuple(padded))

    cheap = curve("cheap", 10, 1, [0.0, 0.0, 0.1, 0.2, 5.0])  # free to 20 %, then 0.1 per channel
    fragile = curve("fragile", 10, 1, [3.0, 6.0])  # every channel costs
    residual = curve("residual", 10, 2, [0.1, 0.5, float("inf")])  # 2 outputs per channel; 30 % impossible
    noisy = curve("noisy", 10, 1, [0.5, 0.2, 0.4])  # noise: 20 % cannot be cheaper than 10 %, so it is free
    curves = [cheap, fragile, residual, noisy]
    assert allocate(curves, 2) == {"cheap": 2}  # the free channels go first
    assert allocate(curves, 4) == {"cheap": 2, "residual": 1}  # 0.1 for 2 convolution outputs
    assert allocate(curves, 6) == {"cheap": 4, "residual": 1}
    assert allocate(curves, 8) == {"cheap": 4, "residual": 2}  # 0.4 for 2 beats noisy's 0.5 for 1
    assert allocate(curves, 10) == {"cheap": 4, "residual": 2, "noisy": 2}
    everything = allocate(curves, 10_000)  # as much as the curves allow, never a level costing inf
    assert everything == {"cheap": 9, "fragile": 9, "residual": 2, "noisy": 9}
    # A MAC target prices loss per MAC: a fragile group worth 100x the MACs per channel goes first.
    heavy = curve("heavy", 10, 1, [1.0, 2.0], macs=100.0)
    assert allocate([cheap, heavy], 100, "macs") == {"cheap": 2, "heavy": 1}
    assert allocate([cheap, heavy], 2, "channels") == {"cheap": 2}


def test_recalibration_sets_each_batchnorm_to_the_average_of_its_inputs(monkeypatch) -> None:
    from yolox_sdk.optimization.calibration import recalibrate_batchnorm, training_batches

    monkeypatch.setenv("YOLOX_SDK_ASSETS", str(ASSETS))
    model, _, _ = create_model("yolox-nano", 80, pretrained=True, input_size=(SIZE, SIZE))
    config = load_config(None, [f"data.{key}" for key in ("train_path=coco8", "format=yolo", "batch_size=2")])
    batches = training_batches(config, (SIZE, SIZE), 2)
    assert len(batches) == 2 and all(len(images) == 2 for images, _ in batches)  # coco8 train: 4 images
    norm = model.get_submodule("backbone.backbone.dark3.0.pconv.bn")
    seen: list[torch.Tensor] = []
    handle = norm.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    momentum = norm.momentum
    assert recalibrate_batchnorm(model, batches) == 4
    handle.remove()
    expected = torch.stack([inputs.mean(dim=(0, 2, 3)) for inputs in seen]).mean(dim=0)
    torch.testing.assert_close(norm.running_mean, expected, rtol=1e-4, atol=1e-5)
    assert norm.momentum == momentum and not model.training


@pytest.mark.slow
def test_sensitivity_scope_keeps_the_accuracy_uniform_pruning_destroys(
    files: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """10 % of the COCO nano's channels: uniform L2 takes coco8 val mAP50:95 from 0.24 to 0.000 (and
    global too), measured sensitivity keeps 0.18 of it, with the loss measured on coco8's 4 train images."""
    uniform = prune(files["source"], 0.1, scope="uniform", out=tmp_path / "uniform.pt", latency_runs=0)
    result = prune(files["source"], 0.1, out=tmp_path / "sensitivity.pt", latency_runs=0)
    assert "too few to re-estimate" in caplog.text  # 4 training images: the statistics are kept
    assert 0.09 < result.ratio < 0.12 and 0.09 < uniform.ratio < 0.12
    assert result.before.map > 0.2 and uniform.after.map < 0.02
    assert result.after.map > 0.5 * result.before.map
    assert load_checkpoint(result.output).pruning["scope"] == "sensitivity"


def test_without_training_data_sensitivity_is_refused_and_uniform_skips_recalibration(
    files: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = load_checkpoint(files["source"])
    bare = save_checkpoint(
        tmp_path / "bare.pt", Checkpoint(checkpoint.model, checkpoint.spec, checkpoint.class_names)
    )
    with pytest.raises(ConfigError, match=r"names no training data.*--data.*--scope global/uniform"):
        prune(bare, 0.3, evaluate=False, latency_runs=0)
    assert not bare.with_name("bare.pruned.pt").exists()
    with caplog.at_level("WARNING"):
        result = prune(bare, 0.3, scope="uniform", evaluate=False, latency_runs=0)
    assert "not re-estimated" in caplog.text and result.output.is_file()
