"""The ``tflite`` exporter: a YOLOX model as a ``.tflite`` (fp32 or fp16), verified with LiteRT.

The network is converted in-process by ``litert-torch`` (``torch.export`` then LiteRT's MLIR converter):
no TensorFlow, and it shares the SDK's environment (numpy 2, current torch). onnx2tf, the other route,
pins numpy 1.26 and tensorflow 2.19 and downloads a calibration file from GitHub even for a float
conversion, so it is left to users (the plugin's README gives the commands). ``fp16`` is the fp32 file
with its weights cast to float16 by ai-edge-quantizer (a litert-torch dependency), which takes a fraction
of a second instead of a second conversion. yolox-sdk's metadata goes into the file's ``metadata`` list
(``yolox_sdk_tflite.flatbuffer``).

After writing, the file is loaded back through this plugin's runtime, exactly as ``predict`` and ``eval``
will load it, and run on the sample images; its decoded rows are compared with PyTorch's (boxes as
fractions of the input size). Above the precision's tolerance the file is renamed ``<stem>.failed.tflite``
and ``ExportError`` is raised.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yolox_sdk.errors import ExportError, YoloxSdkError
from yolox_sdk.export.samples import sample_batch
from yolox_sdk.plugins.interfaces import METADATA_FILE_STEM, METADATA_INPUT_SIZE, ExportResult
from yolox_sdk_tflite import TfliteExportOptions, TfliteRuntimeOptions
from yolox_sdk_tflite.flatbuffer import DECODED, PRECISION, embed_metadata, import_converter

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

LETTERBOX = "letterbox top-left keeping aspect, pad 114, BGR, 0..255 float, NCHW"
DECODED_LAYOUT = "cx,cy,w,h,objectness,class probabilities (input pixels)"
RAW_LAYOUT = "raw head output: dx,dy,log w,log h per anchor (stride 8,16,32 grids), objectness, classes"


class TfliteExporter:
    """Writes ``<file_stem>.tflite`` (``model`` by default) and verifies it; see the module docstring."""

    def __init__(self, options: TfliteExportOptions | None = None) -> None:
        self.options = options or TfliteExportOptions()

    def export(
        self,
        model: torch.nn.Module,
        metadata: Mapping[str, Any],
        out_dir: Path,
        sample_images: Sequence[Path],
    ) -> ExportResult:
        """Export ``model`` to ``.tflite`` and check it on ``sample_images``.

        Raises:
            PluginError: litert-torch or ai-edge-litert is not installed (the message says how).
            ExportError: the conversion or the check fails, or the file differs from PyTorch by more than
                the precision's tolerance.
        """
        litert_torch = import_converter()
        if METADATA_INPUT_SIZE not in metadata:
            raise ExportError("The TFLite exporter needs metadata['input_size'] = (height, width).")
        input_size = input_size_of(metadata)
        path = output_path(out_dir, metadata)
        started = time.perf_counter()
        batch, notes = sample_batch(sample_images, input_size)
        network = prepared_network(model, self.options.decode_in_graph)
        content = convert(litert_torch, network, batch[:1])
        if self.options.precision == "fp16":
            content = float16_weights(content)
        entries = file_metadata(metadata, self.options.precision, self.options.decode_in_graph)
        write_atomically(path, embed_metadata(content, entries))
        seconds = time.perf_counter() - started
        difference, checked = compare_with_torch(model, path, batch, input_size)
        log.info("TFLite export %s: %.2f s, max abs diff vs PyTorch %.3g", path, seconds, difference)
        notes.insert(
            0,
            f"exported in {seconds:.2f} s (litert-torch {litert_torch.__version__}, {self.options.precision})",
        )
        notes.append(checked)
        notes.append(f"max abs diff vs PyTorch (LiteRT interpreter, CPU): {difference:.3g}")
        if not difference <= self.options.check_tolerance:  # written so that NaN fails too
            failed = keep_failed(path)
            raise ExportError(
                f"The TFLite model disagrees with PyTorch: max abs difference {difference:.3g} > tolerance "
                f"{self.options.check_tolerance:g} on the sample images ({self.options.precision}). The file was "
                f"kept as {failed} for inspection. Try precision: fp32, or raise export.options.tflite.tolerance/"
                "fp16_tolerance if the difference is acceptable for your use."
            )
        return ExportResult(path=path, format="tflite", max_abs_diff=difference, notes=tuple(notes))


def input_size_of(metadata: Mapping[str, Any]) -> tuple[int, int]:
    """``metadata["input_size"]`` as ``(height, width)``."""
    return int(metadata[METADATA_INPUT_SIZE][0]), int(metadata[METADATA_INPUT_SIZE][1])


def output_path(out_dir: Path, metadata: Mapping[str, Any]) -> Path:
    """``<out_dir>/<file_stem>.tflite``, with the folder created and an earlier failed file removed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{metadata.get(METADATA_FILE_STEM) or 'model'}.tflite"
    failed_path(path).unlink(missing_ok=True)
    return path


def failed_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.failed.tflite")


def keep_failed(path: Path) -> Path:
    """Rename a file that failed its check to ``<stem>.failed.tflite``; nothing stays under the real name."""
    failed = failed_path(path)
    path.replace(failed)
    return failed


def write_atomically(path: Path, content: bytes) -> None:
    """Write through a temporary name, so an interrupted export leaves no half-written ``.tflite``."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(content)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ExportError(f"Cannot write {path}: {error.strerror or error}.") from error


def prepared_network(model: torch.nn.Module, decode: bool) -> torch.nn.Module:
    """A float32 CPU copy of the YOLOX network in eval mode, decoding in the graph or not."""
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "decode_in_inference"):
        raise ExportError(
            f"The TFLite exporter expects a YOLOX network with a head (got {type(model).__name__}); export the "
            "model built by yolox_sdk.models."
        )
    network = copy.deepcopy(model).cpu().float().eval()
    network.head.decode_in_inference = decode
    return network


def convert(litert_torch: Any, network: torch.nn.Module, example: torch.Tensor) -> bytes:
    """The network as TFLite flatbuffer bytes (batch fixed at ``example``'s, 1).

    A conversion takes 15-50 s on two cores and depends only on the network and the input shape, so the
    last few are kept for this process: ``benchmark`` rows of one checkpoint (fp32 then fp16) and a
    ``tflite-int8`` export after another convert once.
    """
    key = _conversion_key(litert_torch, network, example)
    if key in _CONVERSIONS:
        _CONVERSIONS.move_to_end(key)
        return _CONVERSIONS[key]
    try:
        with warnings.catch_warnings(), quiet_root_logger():
            warnings.simplefilter("ignore")  # torch.export's notes on YOLOX's shape arithmetic
            edge = litert_torch.convert(network, (example,))
            content = bytes(edge.model_content())
    except Exception as error:  # noqa: BLE001 - torch.export and the MLIR converter raise many types
        reason = str(error).strip().splitlines()[0][:500] if str(error).strip() else type(error).__name__
        raise ExportError(f"litert-torch could not convert the model: {reason}") from error
    _CONVERSIONS[key] = content
    while len(_CONVERSIONS) > _KEPT_CONVERSIONS:
        _CONVERSIONS.popitem(last=False)
    return content


_KEPT_CONVERSIONS = 2
_CONVERSIONS: OrderedDict[str, bytes] = OrderedDict()


def _conversion_key(litert_torch: Any, network: torch.nn.Module, example: torch.Tensor) -> str:
    """What the converted graph depends on: converter version, module tree (activations, decoding),
    input shape and every weight."""
    digest = hashlib.sha256()
    decode = getattr(getattr(network, "head", None), "decode_in_inference", None)
    digest.update(f"{litert_torch.__version__}|{network!r}|{decode}|{tuple(example.shape)}".encode())
    for name, tensor in network.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """litert-torch and ai-edge-quantizer log each step at INFO on the root logger ("Use JAX lowering:
    aten.exp", "Serializing model..."), twenty lines a conversion that say nothing to act on; the SDK's
    own loggers log nothing meanwhile."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def float16_weights(content: bytes) -> bytes:
    """``content`` with its float weights stored in float16 (ai-edge-quantizer's float casting)."""
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    try:
        casting = quantizer.Quantizer(bytearray(content))
        casting.add_weight_only_config(
            regex=".*",
            operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            num_bits=16,
            algorithm_key=AlgorithmName.FLOAT_CASTING,
        )
        with quiet_root_logger():
            result = casting.quantize(enable_progress_bar=False, enable_progress_report=False)
        return bytes(result.quantized_model)
    except Exception as error:  # noqa: BLE001 - the quantizer raises many types
        raise ExportError(f"ai-edge-quantizer could not cast the weights to float16: {error}") from error


def file_metadata(metadata: Mapping[str, Any], precision: str, decoded: bool) -> dict[str, Any]:
    """The entries written into the file: the export's metadata plus how to feed and read the graph."""
    entries = {key: value for key, value in metadata.items() if key != METADATA_FILE_STEM}
    entries.update(
        {
            DECODED: decoded,
            PRECISION: precision,
            "preprocessing": LETTERBOX,
            "output_layout": DECODED_LAYOUT if decoded else RAW_LAYOUT,
        }
    )
    return entries


def fractions(rows: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Decoded rows with boxes as fractions of the input, so one tolerance fits every column."""
    height, width = input_size
    scale = np.array([width, height, width, height], dtype=np.float32)
    return np.concatenate([rows[..., :4] / scale, rows[..., 4:]], axis=-1)


def compare_with_torch(
    model: torch.nn.Module, path: Path, batch: torch.Tensor, input_size: tuple[int, int]
) -> tuple[float, str]:
    """Largest absolute difference between the file (loaded by the runtime, decoded) and PyTorch's decoded
    rows, on the whole batch run through the runtime (which runs it image by image)."""
    import torch

    from yolox_sdk_tflite.runtime import TfliteRuntime

    try:
        loaded = TfliteRuntime(TfliteRuntimeOptions()).load(path, "cpu")
    except YoloxSdkError as error:
        failed = keep_failed(path)
        raise ExportError(
            f"The TFLite file just written cannot be loaded back (kept as {failed}): {error}"
        ) from error
    network = prepared_network(model, decode=True)
    with torch.inference_mode():
        expected = network(batch).numpy()
    try:
        actual = loaded.forward(np.ascontiguousarray(batch.numpy()))
    except Exception as error:  # noqa: BLE001 - LiteRT raises its own exception types
        failed = keep_failed(path)
        raise ExportError(f"LiteRT failed to run {failed} on the sample images: {error}") from error
    if actual.shape != expected.shape:
        failed = keep_failed(path)
        raise ExportError(
            f"The TFLite file {failed} returns shape {actual.shape}; PyTorch returns {expected.shape}."
        )
    difference = float(np.max(np.abs(fractions(actual, input_size) - fractions(expected, input_size))))
    return difference, f"checked on {len(batch)} image(s) through the tflite runtime"
