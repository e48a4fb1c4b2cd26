"""yolox-sdk plugin: TFLite export (``tflite``, ``tflite-int8`` exporters) and inference (``tflite`` runtime).

Imported whenever yolox-sdk builds its registry, so it declares only the options classes and the hooks;
``litert_torch`` (the converter, ~10 s to import) and ``ai_edge_litert`` (the runtime) are imported when a
model is exported or loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from yolox_sdk.config.validators import boolean, number, one_of
from yolox_sdk.plugins import hookimpl
from yolox_sdk.plugins.hookspecs import Register

if TYPE_CHECKING:
    from yolox_sdk_tflite.exporter import TfliteExporter
    from yolox_sdk_tflite.int8 import TfliteInt8Exporter
    from yolox_sdk_tflite.runtime import TfliteRuntime

__version__ = "0.1.0"

PRECISIONS = ("fp32", "fp16")


@attrs.frozen
class TfliteExportOptions:
    """Options of the ``tflite`` exporter (``export.options.tflite`` in the config).

    Attributes:
        precision: ``fp32`` keeps every weight in float32; ``fp16`` stores the weights in float16 (half
            the file) with dequantize ops in front of the layers, so input, output and CPU computation
            stay float32 (the usual TFLite float16 file; GPU delegates may compute in float16).
        decode_in_graph: include box decoding in the graph (YOLOX's ``decode_in_inference``); without it
            the runtime decodes the raw head rows in numpy.
        tolerance: largest absolute difference from PyTorch accepted on the sample images for ``fp32``
            files; decoded box coordinates are compared as fractions of the input size. LiteRT's
            XNNPACK kernels differ from PyTorch by 4e-5 on coco8 (yolox-nano, 256 px); a broken graph by
            far more.
        fp16_tolerance: the same for ``fp16`` files. Float16 weights move boxes of confident anchors by
            up to 0.025 of the input and scores by up to 0.035 on real images (yolox-nano, 256 px), so
            this check only catches a broken file: measure its mAP (``yolox-sdk eval``) before deploying.
    """

    precision: str = attrs.field(default="fp32", validator=one_of(PRECISIONS))
    decode_in_graph: bool = attrs.field(default=True, validator=boolean())
    tolerance: float = attrs.field(default=5e-4, validator=number(0.0))
    fp16_tolerance: float = attrs.field(default=0.15, validator=number(0.0))

    @property
    def check_tolerance(self) -> float:
        """The tolerance the check applies to this precision."""
        return self.fp16_tolerance if self.precision == "fp16" else self.tolerance


@attrs.frozen
class TfliteInt8Options:
    """Options of the ``tflite-int8`` exporter (``export.options.tflite-int8``).

    Attributes:
        max_ap_drop: largest accepted loss of AP50:95, in points (0-100 scale), on the validation data.
        calibration_images: how many training images to calibrate on (drawn with a fixed seed).
        calibration_folder: calibrate on the images of this folder instead of the training data.
        val_path: dataset to measure the AP drop on, instead of the checkpoint's validation data.
        val_split: its split (with ``val_path``).
        val_format: its format (with ``val_path``).
        eval_images: at most this many validation images (the first ones) per evaluation; all by default.
        max_float_fraction: the largest share of convolutions the search may keep float.
        threads: CPU threads of the interpreter that calibrates and evaluates the candidates.
        tolerance: largest absolute difference from PyTorch accepted on the anchors PyTorch scores 0.3 or
            more in the sample images (boxes as fractions of the input). INT8 within a 1-point budget moves
            them by up to 0.25 on BCCD (yolox-nano, 256 px; scores, boxes by 0.05), so this catches a broken
            file; the AP budget judges the rest.
    """

    max_ap_drop: float = attrs.field(default=1.0, validator=number(0.0, 100.0))
    calibration_images: int = attrs.field(default=100, validator=number(1, 100_000))
    calibration_folder: str | None = None
    val_path: str | None = None
    val_split: str | None = None
    val_format: str = "auto"
    eval_images: int | None = attrs.field(default=None, validator=number(1, 1_000_000, optional=True))
    max_float_fraction: float = attrs.field(default=0.5, validator=number(0.0, 1.0))
    threads: int | None = attrs.field(default=None, validator=number(1, 1024, optional=True))
    tolerance: float = attrs.field(default=0.5, validator=number(0.0))


@attrs.frozen
class TfliteRuntimeOptions:
    """Options of the ``tflite`` runtime (``runtime.tflite``).

    Attributes:
        threads: CPU threads of the LiteRT interpreter; ``None`` lets LiteRT choose.
    """

    threads: int | None = attrs.field(default=None, validator=number(1, 1024, optional=True))


def create_exporter(options: TfliteExportOptions | None = None) -> TfliteExporter:
    """Factory of the ``tflite`` exporter (litert-torch is imported when it exports)."""
    from yolox_sdk_tflite.exporter import TfliteExporter

    return TfliteExporter(options or TfliteExportOptions())


def create_int8_exporter(options: TfliteInt8Options | None = None) -> TfliteInt8Exporter:
    """Factory of the ``tflite-int8`` exporter."""
    from yolox_sdk_tflite.int8 import TfliteInt8Exporter

    return TfliteInt8Exporter(options or TfliteInt8Options())


def create_runtime(options: TfliteRuntimeOptions | None = None) -> TfliteRuntime:
    """Factory of the ``tflite`` runtime (ai-edge-litert is imported when a file is loaded)."""
    from yolox_sdk_tflite.runtime import TfliteRuntime

    return TfliteRuntime(options or TfliteRuntimeOptions())


@hookimpl
def register_exporters(register: Register) -> None:
    """Register the ``tflite`` and ``tflite-int8`` exporters."""
    register(
        "tflite",
        create_exporter,
        options=TfliteExportOptions,
        description="TFLite (.tflite, fp32 or fp16) converted by litert-torch, checked against PyTorch with LiteRT",
    )
    register(
        "tflite-int8",
        create_int8_exporter,
        options=TfliteInt8Options,
        description="INT8 TFLite (ai-edge-quantizer), sensitive layers kept float to stay within an AP budget",
    )


@hookimpl
def register_runtimes(register: Register) -> None:
    """Register the ``tflite`` runtime."""
    register(
        "tflite",
        create_runtime,
        options=TfliteRuntimeOptions,
        description="TFLite files exported by yolox-sdk (.tflite), LiteRT interpreter (ai-edge-litert) on CPU",
    )
