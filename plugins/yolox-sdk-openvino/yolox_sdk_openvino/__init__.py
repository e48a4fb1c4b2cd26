"""yolox-sdk plugin: OpenVINO IR export (``openvino`` exporter, ``openvino-int8`` with NNCF) and inference
(``openvino`` runtime).

Imported whenever yolox-sdk builds its registry, so it declares only the options classes and the hooks;
``openvino`` itself (a second to import) and ``nncf`` are imported when a model is exported or loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from yolox_sdk.config.validators import FieldError, boolean, number, one_of
from yolox_sdk.plugins import hookimpl
from yolox_sdk.plugins.hookspecs import Register

if TYPE_CHECKING:
    from yolox_sdk_openvino.exporter import OpenVinoExporter
    from yolox_sdk_openvino.int8 import OpenVinoInt8Exporter
    from yolox_sdk_openvino.runtime import OpenVinoRuntime

__version__ = "0.1.0"

PRECISIONS = ("fp32", "fp16")
INFERENCE_PRECISIONS = ("f32", "auto", "bf16", "f16")
NNCF_PRESETS = ("performance", "mixed")


@attrs.frozen
class OpenVinoExportOptions:
    """Options of the ``openvino`` exporter (``export.options.openvino`` in the config).

    Attributes:
        precision: ``fp32`` keeps the weights in float32; ``fp16`` stores them in float16 (half the
            ``.bin``; ``openvino.save_model(compress_to_fp16=True)``). The graph's input and output stay
            float32 either way, so runtimes feed both files alike.
        decode_in_graph: include box decoding in the graph (YOLOX's ``decode_in_inference``); without it
            the runtime decodes the raw head rows in numpy.
        tolerance: largest absolute difference from PyTorch accepted on the sample images for ``fp32``
            files; decoded box coordinates are compared as fractions of the input size.
        fp16_tolerance: the same for ``fp16`` files. Float16 weights move class probabilities of
            low-objectness anchors by up to 0.09 on coco8 images (yolox-nano, 320 px; confident boxes by
            ~1e-3), so this check only catches a broken graph: measure the file's mAP before deploying it.
    """

    precision: str = attrs.field(default="fp32", validator=one_of(PRECISIONS))
    decode_in_graph: bool = attrs.field(default=True, validator=boolean())
    tolerance: float = attrs.field(default=1e-4, validator=number(0.0))
    fp16_tolerance: float = attrs.field(default=0.15, validator=number(0.0))

    @property
    def check_tolerance(self) -> float:
        """The tolerance the check applies to this precision."""
        return self.fp16_tolerance if self.precision == "fp16" else self.tolerance


@attrs.frozen
class OpenVinoInt8Options:
    """Options of the ``openvino-int8`` exporter (``export.options.openvino-int8``); names as ``onnx-int8``'s.

    Attributes:
        max_ap_drop: largest accepted loss of AP50:95, in points (0-100 scale), on the validation data.
        calibration_images: how many training images to calibrate on (drawn with a fixed seed); NNCF's
            ``subset_size``.
        calibration_folder: calibrate on the images of this folder instead of the training data.
        val_path: dataset to measure the AP drop on, instead of the checkpoint's validation data.
        val_split: its split (with ``val_path``).
        val_format: its format (with ``val_path``).
        eval_images: at most this many validation images (the first ones) per evaluation; all by default.
        max_float_fraction: the largest share of convolutions the search may keep float.
        preset: NNCF's ``performance`` (symmetric activations, NNCF's default for CNNs) or ``mixed``
            (asymmetric activations: YOLOX's SiLU outputs are mostly positive).
        fast_bias_correction: NNCF's fast bias correction (``False``: the slower, more exact method).
    """

    max_ap_drop: float = attrs.field(default=1.0, validator=number(0.0, 100.0))
    calibration_images: int = attrs.field(default=100, validator=number(1, 100_000))
    calibration_folder: str | None = None
    val_path: str | None = None
    val_split: str | None = None
    val_format: str = "auto"
    eval_images: int | None = attrs.field(default=None, validator=number(1, 1_000_000, optional=True))
    max_float_fraction: float = attrs.field(default=0.5, validator=number(0.0, 1.0))
    preset: str = attrs.field(default="performance", validator=one_of(NNCF_PRESETS))
    fast_bias_correction: bool = attrs.field(default=True, validator=boolean())


def _device_name(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value.strip() or any(char.isspace() for char in value):
        raise FieldError(attribute.name, "an OpenVINO device name such as CPU, GPU, NPU or AUTO", value)


@attrs.frozen
class OpenVinoRuntimeOptions:
    """Options of the ``openvino`` runtime (``runtime.openvino``).

    Attributes:
        threads: CPU inference threads (``INFERENCE_NUM_THREADS``); ``None`` lets OpenVINO choose (one
            per physical core).
        device: the OpenVINO device the model is compiled for: ``CPU`` (default), ``GPU`` (an Intel
            GPU, not CUDA), ``NPU`` or ``AUTO``.
        inference_precision: ``f32`` (default) computes in float32, so results match PyTorch and the
            ONNX file; ``auto`` lets the device choose (bfloat16 on CPUs with AVX-512 BF16 or AMX,
            which moves low-confidence scores by up to 0.5: measure mAP first); ``bf16`` and ``f16``
            ask for those explicitly.
    """

    threads: int | None = attrs.field(default=None, validator=number(1, 1024, optional=True))
    device: str = attrs.field(default="CPU", validator=_device_name)
    inference_precision: str = attrs.field(default="f32", validator=one_of(INFERENCE_PRECISIONS))


def create_exporter(options: OpenVinoExportOptions | None = None) -> OpenVinoExporter:
    """Factory of the ``openvino`` exporter (openvino is imported when it exports)."""
    from yolox_sdk_openvino.exporter import OpenVinoExporter

    return OpenVinoExporter(options or OpenVinoExportOptions())


def create_int8_exporter(options: OpenVinoInt8Options | None = None) -> OpenVinoInt8Exporter:
    """Factory of the ``openvino-int8`` exporter (openvino and nncf are imported when it exports)."""
    from yolox_sdk_openvino.int8 import OpenVinoInt8Exporter

    return OpenVinoInt8Exporter(options or OpenVinoInt8Options())


def create_runtime(options: OpenVinoRuntimeOptions | None = None) -> OpenVinoRuntime:
    """Factory of the ``openvino`` runtime (openvino is imported when a file is loaded)."""
    from yolox_sdk_openvino.runtime import OpenVinoRuntime

    return OpenVinoRuntime(options or OpenVinoRuntimeOptions())


@hookimpl
def register_exporters(register: Register) -> None:
    """Register the ``openvino`` and ``openvino-int8`` exporters."""
    register(
        "openvino",
        create_exporter,
        options=OpenVinoExportOptions,
        description="OpenVINO IR (.xml + .bin, fp32 or fp16), checked against PyTorch with OpenVINO on CPU",
    )
    register(
        "openvino-int8",
        create_int8_exporter,
        options=OpenVinoInt8Options,
        description="INT8 OpenVINO IR (NNCF), sensitive layers kept float to stay within an AP budget",
    )


@hookimpl
def register_runtimes(register: Register) -> None:
    """Register the ``openvino`` runtime."""
    register(
        "openvino",
        create_runtime,
        options=OpenVinoRuntimeOptions,
        description="OpenVINO IR files exported by yolox-sdk (.xml with its .bin), OpenVINO Runtime",
    )
