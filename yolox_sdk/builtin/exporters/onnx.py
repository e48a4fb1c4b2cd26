"""The ``onnx`` exporter: a YOLOX model as an ONNX graph, verified against PyTorch with onnxruntime.

The graph takes ``images`` (N x 3 x H x W float, letterboxed BGR 0..255 exactly as
``yolox_sdk.data.preprocess`` makes them) and returns ``output``: with ``decode_in_graph`` the decoded
``[cx, cy, w, h, objectness, class probabilities...]`` rows in input pixels, otherwise the head's raw rows
(regression offsets, probabilities), for runtimes that decode themselves. Class names, input size and
the model spec travel in the file's ``metadata_props`` so a deployed model needs no side file.

After writing, the exporter runs the file with onnxruntime on real sample images and compares with
PyTorch; a difference above ``tolerance`` raises ``ExportError`` rather than shipping a wrong model
(decoded boxes are compared as fractions of the input size: in pixels, float32 rounding alone exceeds
1e-4).
The TorchScript exporter (``dynamo=False``) is used: on YOLOX it is fast and exact (ENVIRONMENT.md).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from yolox_sdk.config.validators import number
from yolox_sdk.errors import ExportError
from yolox_sdk.export.samples import sample_batch as _sample_batch
from yolox_sdk.plugins.hookspecs import Register, hookimpl
from yolox_sdk.plugins.interfaces import METADATA_FILE_STEM, METADATA_INPUT_SIZE, ExportResult

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAME = "output"
MIN_OPSET = 11  # YOLOX's upsampling and SiLU need at least opset 11


@attrs.frozen
class OnnxOptions:
    """Options of the ``onnx`` exporter (``export.options.onnx`` in the config).

    Attributes:
        opset: ONNX opset version; 17 runs on every current onnxruntime, TensorRT and OpenVINO.
        dynamic_batch: make the batch dimension symbolic (fixed at 1 otherwise).
        decode_in_graph: include box decoding in the graph (YOLOX's ``decode_in_inference``).
        simplify: simplify the graph after export with ``simplifier``.
        simplifier: ``onnxslim`` (a dependency, pure Python: constant folding and operator fusion; the
            dynamic-batch nano graph goes from 585 to 373 nodes) or ``onnxsim`` (needs its native wheel).
        tolerance: largest absolute difference from PyTorch accepted on the sample images; decoded box
            coordinates are compared as fractions of the input size, scores and raw outputs as they are.
            1e-3: float32 rounding alone reaches 1.3e-4 on BCCD nano models that were pruned and
            finetuned (their ONNX files score the same mAP as the checkpoints, 0.522), while a broken graph
            differs by 0.1 or more.
        fp16: half-precision weights and activations inside the graph (input and output stay float32, so
            runtimes feed it like the float32 file); half the file size. Checked against the float32
            PyTorch model with ``fp16_tolerance`` instead of ``tolerance``.
        fp16_tolerance: the check's tolerance for ``fp16`` files. Half precision moves class
            probabilities and box fractions of low-objectness anchors by up to 0.08 on real coco8 images
            (yolox-nano, 320 px; confident boxes by ~1e-3), so this check only catches a broken graph:
            measure the fp16 file's mAP (``yolox-sdk eval`` or ``benchmark``) before deploying it.
    """

    opset: int = attrs.field(default=17, validator=number(MIN_OPSET))
    dynamic_batch: bool = False
    decode_in_graph: bool = True
    simplify: bool = False
    simplifier: str = attrs.field(default="onnxslim", validator=attrs.validators.in_(("onnxslim", "onnxsim")))
    tolerance: float = attrs.field(default=1e-3, validator=number(0.0))
    fp16: bool = False
    fp16_tolerance: float = attrs.field(default=0.1, validator=number(0.0))

    @property
    def check_tolerance(self) -> float:
        """The tolerance the check applies: ``fp16_tolerance`` for half-precision files."""
        return self.fp16_tolerance if self.fp16 else self.tolerance


@hookimpl
def register_exporters(register: Register) -> None:
    """Register the ``onnx`` exporter."""
    register(
        "onnx",
        OnnxExporter,
        options=OnnxOptions,
        description="ONNX graph (torch.onnx, opset 17), checked against PyTorch with onnxruntime",
    )


class OnnxExporter:
    """Writes ``<file_stem>.onnx`` (``model.onnx`` by default) and verifies it; see the module docstring."""

    def __init__(self, options: OnnxOptions | None = None) -> None:
        self.options = options or OnnxOptions()

    def export(
        self,
        model: torch.nn.Module,
        metadata: Mapping[str, Any],
        out_dir: Path,
        sample_images: Sequence[Path],
    ) -> ExportResult:
        """Export ``model`` and check it on ``sample_images``.

        Args:
            model: a YOLOX network; it is copied, so the caller's model is left as it was.
            metadata: must hold ``input_size`` ``(height, width)``; ``class_names`` and every other entry
                are written to the file's ``metadata_props``; ``file_stem`` names the file.
            out_dir: created if needed.
            sample_images: real images for the check; without any, a synthetic image is used (noted).

        Raises:
            ExportError: when export, simplification or the check fails, or the outputs differ by more
                than ``tolerance`` (the file is then renamed ``<stem>.failed.onnx``).
        """
        if METADATA_INPUT_SIZE not in metadata:
            raise ExportError("The ONNX exporter needs metadata['input_size'] = (height, width).")
        input_size = (int(metadata[METADATA_INPUT_SIZE][0]), int(metadata[METADATA_INPUT_SIZE][1]))
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{metadata.get(METADATA_FILE_STEM) or 'model'}.onnx"
        path.with_name(f"{path.stem}.failed.onnx").unlink(missing_ok=True)  # from an earlier failed run
        network = _prepare(model, self.options.decode_in_graph)
        batch, notes = _sample_batch(sample_images, input_size)

        started = time.perf_counter()
        graph_network = _half_precision(network) if self.options.fp16 else network
        _export_graph(graph_network, batch[:1], path, self.options)
        if self.options.simplify:
            _simplify(path, self.options.simplifier)
        _write_metadata(path, metadata, self.options)
        seconds = time.perf_counter() - started

        difference = _compare_with_torch(network, path, batch, self.options)
        log.debug(
            "ONNX export %s: %.2f s, max abs diff vs PyTorch %.3g", path, seconds, difference
        )  # the CLI prints it
        precision = "fp16" if self.options.fp16 else "fp32"
        notes.append(f"exported in {seconds:.2f} s (opset {self.options.opset}, {precision})")
        notes.append(f"max abs diff vs PyTorch on {len(batch)} image(s): {difference:.3g}")
        if not difference <= self.options.check_tolerance:  # written so that NaN fails too
            failed = path.with_name(f"{path.stem}.failed.onnx")
            path.replace(failed)
            raise ExportError(
                f"The ONNX model disagrees with PyTorch: max abs difference {difference:.3g} > tolerance "
                f"{self.options.check_tolerance:g} on the sample images. The file was kept as {failed} for "
                "inspection. Try another export.options.onnx.opset, simplify: false, or raise tolerance if "
                "the difference is acceptable for your use."
            )
        return ExportResult(path=path, format="onnx", max_abs_diff=difference, notes=tuple(notes))


def _prepare(model: torch.nn.Module, decode: bool) -> torch.nn.Module:
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "decode_in_inference"):
        raise ExportError(
            f"The ONNX exporter expects a YOLOX network with a head (got {type(model).__name__}); "
            "export the model built by yolox_sdk.models."
        )
    network = copy.deepcopy(model).cpu().float().eval()
    network.head.decode_in_inference = decode
    return network


def _half_precision(network: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``network`` computing in float16 between a float32 input and output, so a runtime
    feeds the fp16 file exactly like the fp32 one. (The class is local: this module imports torch only
    when exporting, never when the plugin registers.)"""
    import torch

    class HalfPrecisionNetwork(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = copy.deepcopy(inner).half()

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.inner(images.half()).float()

    return HalfPrecisionNetwork(network)


def _export_graph(network: torch.nn.Module, example: torch.Tensor, path: Path, options: OnnxOptions) -> None:
    import torch

    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if options.dynamic_batch else None
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is chosen on purpose (module docstring); its deprecation notice and
            # tracer warnings about YOLOX's shape arithmetic say nothing the user can act on.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                network,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
                opset_version=options.opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as error:  # noqa: BLE001 - torch.onnx raises many types
        raise ExportError(f"torch.onnx.export failed at opset {options.opset}: {error}") from error


def _simplify(path: Path, simplifier: str) -> None:
    if simplifier == "onnxslim":
        _slim(path)
        return
    import onnx

    try:
        import onnxsim
    except ImportError as error:
        raise ExportError(
            "export.options.onnx.simplify is true but onnxsim is not installed: `pip install onnxsim`, "
            "or set simplify: false."
        ) from error
    failure: Exception | None = None
    with _captured_native_output() as captured:
        try:
            simplified, valid = onnxsim.simplify(onnx.load(str(path)))
        except Exception as error:  # noqa: BLE001 - onnxsim raises many types
            failure = error
    if captured.text:
        log.debug("onnxsim output:\n%s", captured.text)
    if failure is not None:
        output = f" Its output ended with:\n{captured.text[-2000:]}" if captured.text else ""
        raise ExportError(f"onnxsim failed on {path}: {failure}. Set simplify: false.{output}") from failure
    if not valid:
        raise ExportError(
            f"onnxsim produced a graph that fails its own check for {path}. Set simplify: false."
        )
    onnx.save(simplified, str(path))


def _slim(path: Path) -> None:
    import onnx
    import onnxslim

    try:
        with _captured_native_output() as captured:
            slimmed = onnxslim.slim(onnx.load(str(path)))
    except Exception as error:  # noqa: BLE001 - onnxslim raises many types
        raise ExportError(
            f"onnxslim failed on {path}: {error}. Set simplify: false, or simplifier: onnxsim."
        ) from error
    if captured.text:
        log.debug("onnxslim output:\n%s", captured.text)
    if slimmed is None:
        raise ExportError(f"onnxslim returned no model for {path}. Set simplify: false.")
    onnx.save(slimmed, str(path))


@attrs.define
class _Captured:
    text: str = ""


@contextlib.contextmanager
def _captured_native_output() -> Iterator[_Captured]:
    """Capture what C++ code writes to the process's stdout/stderr (onnxsim prints a warning per
    shape op it cannot fold when the batch is dynamic), so it goes to the debug log instead."""
    captured = _Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", errors="replace")


def _metadata_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _write_metadata(path: Path, metadata: Mapping[str, Any], options: OnnxOptions) -> None:
    """Store metadata as string ``metadata_props``; non-string values are JSON-encoded."""
    import onnx

    graph = onnx.load(str(path))
    entries = {key: value for key, value in metadata.items() if key != METADATA_FILE_STEM}
    entries["decoded"] = options.decode_in_graph
    entries["precision"] = "fp16" if options.fp16 else "fp32"
    entries["output_layout"] = (
        "cx,cy,w,h,objectness,class probabilities (input pixels)"
        if options.decode_in_graph
        else "raw head output: dx,dy,log w,log h per anchor (stride 8,16,32 grids), objectness, class probabilities"
    )
    entries["preprocessing"] = "letterbox top-left keeping aspect, pad 114, BGR, 0..255 float, NCHW"
    del graph.metadata_props[:]
    for key, value in entries.items():
        prop = graph.metadata_props.add()
        prop.key, prop.value = str(key), _metadata_value(value)
    try:
        onnx.checker.check_model(graph)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"The exported graph {path} is not valid ONNX: {error}") from error
    onnx.save(graph, str(path))


def _comparable(output: np.ndarray, decoded: bool, input_size: tuple[int, int]) -> np.ndarray:
    """Output on a scale where an absolute tolerance means the same thing for every column.

    Decoded boxes are in input pixels (up to hundreds), where float32 rounding alone moves them by
    ~1e-3 px; dividing by the input size expresses them as fractions of the image, like the
    probabilities, which are of order 1. Raw head rows are decoded first (as the runtime will): their
    log sizes differ by ~1.2e-4 on coco8 at 320 px while the boxes they give agree to ~1e-6 of the image,
    and the boxes are what a deployment gets.
    """
    if not decoded:
        from yolox_sdk.runtimes.decoding import decode_raw_output

        output = decode_raw_output(output, input_size)
    height, width = input_size
    scale = np.array([width, height, width, height], dtype=output.dtype)
    return np.concatenate([output[..., :4] / scale, output[..., 4:]], axis=-1)


def _compare_with_torch(
    network: torch.nn.Module, path: Path, batch: torch.Tensor, options: OnnxOptions
) -> float:
    """Largest absolute difference (boxes as fractions of the input when decoded), image by image, plus
    a batch of 2 when the batch is dynamic."""
    import onnxruntime
    import torch

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime cannot load {path}: {error}") from error
    inputs = [batch[index : index + 1] for index in range(len(batch))]
    if options.dynamic_batch:
        pair = batch[:2] if len(batch) >= 2 else torch.cat([batch, batch])
        inputs.append(pair)
    differences = []
    for images in inputs:
        with torch.inference_mode():
            expected = network(images).numpy()
        actual = _run_session(session, images.numpy())
        if actual.shape != expected.shape:
            raise ExportError(
                f"The ONNX model returns shape {actual.shape} for input {tuple(images.shape)}; PyTorch returns "
                f"{expected.shape}."
            )
        input_size = (images.shape[2], images.shape[3])
        actual = _comparable(actual, options.decode_in_graph, input_size)
        expected = _comparable(expected, options.decode_in_graph, input_size)
        differences.append(float(np.max(np.abs(actual - expected))))
    return float(np.max(differences))  # np.max, unlike max(), keeps a NaN


def _run_session(session: Any, images: np.ndarray) -> np.ndarray:
    try:
        return session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime failed on an input of shape {images.shape}: {error}") from error
