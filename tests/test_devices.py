"""Device choice: CUDA failures fall back to the CPU loudly (or stop the run), never silently."""

from __future__ import annotations

import logging

import pytest
import torch

from yolox_sdk.config.schema import DeviceConfig
from yolox_sdk.engine import devices, distributed
from yolox_sdk.errors import ConfigError


@pytest.fixture
def broken_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine where one GPU is visible but initialising it fails (a driver/runtime mismatch)."""

    def fail(*args, **kwargs):
        raise RuntimeError("CUDA driver version is insufficient for CUDA runtime version")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch, "zeros", fail)


def test_cuda_failure_falls_back_to_cpu_with_a_warning(broken_cuda, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="yolox_sdk"):
        chosen = devices.resolve_device(DeviceConfig(type="cuda", fallback=True))
    assert chosen == torch.device("cpu")
    assert "falling back to the CPU" in caplog.text and "driver version is insufficient" in caplog.text


def test_auto_warns_too_when_a_visible_gpu_fails(broken_cuda, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="yolox_sdk"):
        assert devices.resolve_device(DeviceConfig(type="auto")) == torch.device("cpu")
    assert "falling back to the CPU" in caplog.text


def test_without_fallback_the_run_stops_with_a_fix(broken_cuda) -> None:
    with pytest.raises(ConfigError, match="device.fallback: true"):
        devices.resolve_device(DeviceConfig(type="cuda", fallback=False))


def test_gpu_ids_pick_the_device_and_unknown_ids_fall_back(monkeypatch, caplog) -> None:
    monkeypatch.setattr(
        devices, "_cuda_works", lambda index: None if index < 2 else "gpu id 5 does not exist"
    )
    assert devices.resolve_device(DeviceConfig(type="cuda", gpu_ids=[1])) == torch.device("cuda", 1)
    with caplog.at_level(logging.WARNING, logger="yolox_sdk"):
        assert devices.resolve_device(DeviceConfig(type="cuda", gpu_ids=[5])) == torch.device("cpu")
    assert "gpu id 5 does not exist" in caplog.text


def test_cpu_and_missing_mps(monkeypatch) -> None:
    assert devices.resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="MPS is not available"):
        devices.resolve_device(DeviceConfig(type="mps", fallback=False))


@pytest.mark.parametrize("text", ["tpu", "cuda:x", "gpu:0", ""])
def test_a_mistyped_device_option_is_a_config_error(text: str) -> None:
    """``--device`` of eval/predict/export is typed by users: a typo names what is valid, never a crash."""
    with pytest.raises(
        ConfigError, match=rf"Unknown device '{text}': expected auto, cpu, mps, cuda or cuda:N"
    ):
        devices.resolve_device(text)


@pytest.fixture
def torchrun_process_without_cuda(monkeypatch: pytest.MonkeyPatch) -> distributed.DistributedContext:
    """Process 1 of 2 started by torchrun on a machine where no CUDA device is visible."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    return distributed.context_from_environment()


def test_under_torchrun_a_missing_gpu_falls_back_with_a_warning(
    torchrun_process_without_cuda, caplog
) -> None:
    """``device.type: cuda`` without CUDA used to give the CPU silently under torchrun (README: never silently)."""
    with caplog.at_level(logging.WARNING, logger="yolox_sdk"):
        chosen = distributed.device_for_rank(torchrun_process_without_cuda, "cuda", None)
    assert chosen == torch.device("cpu")
    assert "falling back to the CPU" in caplog.text and "no CUDA device is visible" in caplog.text


def test_under_torchrun_without_fallback_the_run_stops(torchrun_process_without_cuda) -> None:
    with pytest.raises(ConfigError, match="device.fallback: true"):
        distributed.device_for_rank(torchrun_process_without_cuda, DeviceConfig(type="cuda", fallback=False))


def test_under_torchrun_auto_without_cuda_is_the_cpu_quietly(torchrun_process_without_cuda, caplog) -> None:
    """``auto`` on a machine with no GPU at all is no fallback (and never MPS: torch.distributed has none)."""
    with caplog.at_level(logging.WARNING, logger="yolox_sdk"):
        assert distributed.device_for_rank(torchrun_process_without_cuda, "auto", None) == torch.device("cpu")
    assert caplog.text == ""


def test_under_torchrun_each_local_rank_takes_its_gpu(monkeypatch) -> None:
    monkeypatch.setattr(devices, "_cuda_works", lambda index: None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    context = distributed.DistributedContext(rank=3, world_size=4, local_rank=1)
    assert distributed.device_for_rank(context, DeviceConfig(type="cuda", gpu_ids=[2, 3])) == torch.device(
        "cuda", 3
    )
    assert distributed.device_for_rank(context, "auto", None) == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="device.gpu_ids lists 1 GPU"):
        distributed.device_for_rank(context, DeviceConfig(type="cuda", gpu_ids=[0]))
