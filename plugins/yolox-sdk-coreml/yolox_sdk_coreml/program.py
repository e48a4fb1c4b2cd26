"""Running a saved ML Program without CoreML, so an export is checked numerically on Linux too.

CoreML itself (``MLModel.predict``) exists only on macOS, and coremltools has no other executor. What it
does have on every OS is the reader of the saved program: ``milproto.load`` turns the package's
``model.mlmodel`` and ``weights/weight.bin`` back into a MIL ``Program`` of typed operations with their
constant values. This module evaluates that program operation by operation with PyTorch kernels
(``torch.nn.functional.conv2d`` for ``conv`` ...), after the MIL operation definitions, rounding every
float16 result to float16 as the program declares (accumulating in float32, as Apple's GPU and Neural
Engine do). So the check covers the saved file: its graph, every stored weight and the float16 casts. It
does not cover CoreML's own kernels, its compute-unit placement or its float16 arithmetic: only
``predict`` on macOS does.

Only the operations a converted YOLOX uses are implemented; a program with any other operation is refused
(``UnsupportedProgram``) rather than half-evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from yolox_sdk_coreml.package import import_coremltools, quiet_coremltools


class UnsupportedProgram(Exception):
    """The program holds an operation (or a form of one) this evaluator does not implement."""


def load_program(package: Path) -> tuple[Any, Any]:
    """The package's spec (read with ``skip_model_load``, which needs no CoreML) and its MIL ``Program``:
    the model's own, or for a pipeline (``nms: true``) that of its ML Program stage."""
    ct = import_coremltools()
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    with quiet_coremltools():
        model = ct.models.MLModel(str(package), skip_model_load=True)
        spec = model.get_spec()
        stages = list(spec.pipeline.models) if spec.WhichOneof("Type") == "pipeline" else [spec]
        programs = [stage for stage in stages if stage.WhichOneof("Type") == "mlProgram"]
        if len(programs) != 1:
            raise UnsupportedProgram(f"{len(programs)} ML Programs in the package (expected one)")
        program = milproto_load(
            programs[0], specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir
        )
    return spec, program


def weight_dtypes(program: Any) -> dict[str, int]:
    """How many constant float tensors of more than 16 values (weights and biases, not shapes or scalars)
    the program stores per numpy dtype name."""
    counts: dict[str, int] = {}
    for op in program.functions["main"].operations:
        value = op.outputs[0].val if op.op_type == "const" else None
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size > 16:
            counts[value.dtype.name] = counts.get(value.dtype.name, 0) + 1
    return counts


def _torch() -> Any:
    import torch

    return torch


def _ints(value: Any) -> list[int]:
    return [int(item) for item in np.asarray(value).reshape(-1)]


def _same_padding(size: int, kernel: int, stride: int, dilation: int, lower: bool) -> tuple[int, int]:
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, large = total // 2, total - total // 2
    return (large, small) if lower else (small, large)


def _padding(
    args: Mapping[str, Any],
    spatial: tuple[int, int],
    kernel: tuple[int, int],
    strides: list[int],
    dilations: list[int],
) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` as ``torch.nn.functional.pad`` takes it, for MIL's ``pad_type``."""
    pad_type = str(args.get("pad_type", "valid"))
    if pad_type == "valid":
        return (0, 0, 0, 0)
    if pad_type == "custom":
        top, bottom, left, right = _ints(args["pad"])
        return (left, right, top, bottom)
    if pad_type in ("same", "same_lower"):
        lower = pad_type == "same_lower"
        top, bottom = _same_padding(spatial[0], kernel[0], strides[0], dilations[0], lower)
        left, right = _same_padding(spatial[1], kernel[1], strides[1], dilations[1], lower)
        return (left, right, top, bottom)
    raise UnsupportedProgram(f"pad_type {pad_type!r}")


def _conv(args: Mapping[str, Any]) -> Any:
    torch = _torch()
    x, weight = args["x"], args["weight"]
    if x.dim() != 4:
        raise UnsupportedProgram(f"conv on a rank-{x.dim()} input")
    strides = _ints(args.get("strides", [1, 1]))
    dilations = _ints(args.get("dilations", [1, 1]))
    padding = _padding(args, tuple(x.shape[2:]), tuple(weight.shape[2:]), strides, dilations)
    x = torch.nn.functional.pad(x, padding)
    return torch.nn.functional.conv2d(
        x, weight, args.get("bias"), stride=strides, dilation=dilations, groups=int(args.get("groups", 1))
    )


def _max_pool(args: Mapping[str, Any]) -> Any:
    torch = _torch()
    x = args["x"]
    kernel, strides = _ints(args["kernel_sizes"]), _ints(args["strides"])
    padding = _padding(args, tuple(x.shape[2:]), (kernel[0], kernel[1]), strides, [1, 1])
    x = torch.nn.functional.pad(x, padding, value=-math.inf)
    return torch.nn.functional.max_pool2d(x, kernel, strides, ceil_mode=bool(args.get("ceil_mode", False)))


def _slice_by_index(args: Mapping[str, Any]) -> Any:
    x = args["x"]
    rank = x.dim()
    begin, end = _ints(args["begin"]), _ints(args["end"])
    stride = _ints(args["stride"]) if "stride" in args else [1] * rank
    begin_mask = [bool(item) for item in np.asarray(args.get("begin_mask", [False] * rank)).reshape(-1)]
    end_mask = [bool(item) for item in np.asarray(args.get("end_mask", [False] * rank)).reshape(-1)]
    squeeze = [bool(item) for item in np.asarray(args.get("squeeze_mask", [False] * rank)).reshape(-1)]
    if any(step <= 0 for step in stride):
        raise UnsupportedProgram("slice_by_index with a negative stride")
    index = tuple(
        slice(None if begin_mask[axis] else begin[axis], None if end_mask[axis] else end[axis], stride[axis])
        for axis in range(rank)
    )
    result = x[index]
    for axis in reversed(range(rank)):
        if squeeze[axis]:
            result = result.squeeze(axis)
    return result


def _upsample(args: Mapping[str, Any]) -> Any:
    torch = _torch()
    scale = (float(args.get("scale_factor_height", 1)), float(args.get("scale_factor_width", 1)))
    return torch.nn.functional.interpolate(args["x"], scale_factor=scale, mode="nearest")


def _concat(args: Mapping[str, Any]) -> Any:
    if bool(args.get("interleave", False)):
        raise UnsupportedProgram("concat with interleave")
    return _torch().cat(list(args["values"]), dim=int(args["axis"]))


_KERNELS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "conv": _conv,
    "max_pool": _max_pool,
    "slice_by_index": _slice_by_index,
    "upsample_nearest_neighbor": _upsample,
    "concat": _concat,
    "silu": lambda args: _torch().nn.functional.silu(args["x"]),
    "sigmoid": lambda args: _torch().sigmoid(args["x"]),
    "exp": lambda args: _torch().exp(args["x"]),
    "add": lambda args: args["x"] + args["y"],
    "mul": lambda args: args["x"] * args["y"],
    "reshape": lambda args: args["x"].reshape(_ints(args["shape"])),
    "transpose": lambda args: args["x"].permute(_ints(args["perm"])),
    "identity": lambda args: args["x"],
    "cast": lambda args: args["x"],  # the rounding to the declared dtype below does the cast
}
SUPPORTED_OPERATIONS = ("const", *sorted(_KERNELS))


def _as_tensor(value: Any) -> Any:
    """A constant as a float32 tensor (float16 values widened exactly), or as it is when not numeric."""
    torch = _torch()
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        array = value.astype(np.float32) if value.dtype.kind == "f" else value
        return torch.from_numpy(np.ascontiguousarray(array))
    if isinstance(value, np.generic | float) and not isinstance(value, np.bool_):
        return (
            torch.tensor(float(value), dtype=torch.float32) if np.asarray(value).dtype.kind == "f" else value
        )
    return value


def _round_to_declared(tensor: Any, var: Any) -> Any:
    """The float32 ``tensor`` rounded to the precision the program declares for ``var``."""
    from coremltools.converters.mil.mil import types

    torch = _torch()
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        return tensor
    dtype = var.dtype
    if dtype == types.fp16:
        return tensor.to(torch.float16).to(torch.float32)
    if dtype == types.fp32:
        return tensor
    raise UnsupportedProgram(f"a float result declared {types.builtin_to_string(dtype)}")


def run_program(program: Any, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate the ``main`` function of ``program`` on ``inputs`` (by input name); float32 outputs by name.

    Raises:
        UnsupportedProgram: an operation, or a form of it, that this module does not implement.
    """
    torch = _torch()
    function = program.functions["main"]
    values: dict[str, Any] = {
        name: torch.from_numpy(np.ascontiguousarray(inputs[name], dtype=np.float32))
        for name in function.inputs
    }

    def argument(item: Any) -> Any:
        if isinstance(item, list | tuple):
            return [argument(part) for part in item]
        if item.name in values:
            return values[item.name]
        if item.val is not None:
            return _as_tensor(item.val)
        raise UnsupportedProgram(f"variable {item.name!r} used before it is computed")

    with torch.inference_mode():
        for op in function.operations:
            if op.op_type == "const":
                values[op.outputs[0].name] = _as_tensor(op.outputs[0].val)
                continue
            kernel = _KERNELS.get(op.op_type)
            if kernel is None:
                raise UnsupportedProgram(f"operation {op.op_type!r} ({op.name})")
            if len(op.outputs) != 1:
                raise UnsupportedProgram(f"operation {op.op_type!r} with {len(op.outputs)} outputs")
            args = {name: argument(var) for name, var in op.inputs.items()}
            values[op.outputs[0].name] = _round_to_declared(kernel(args), op.outputs[0])
    return {var.name: values[var.name].numpy().astype(np.float32) for var in function.outputs}
