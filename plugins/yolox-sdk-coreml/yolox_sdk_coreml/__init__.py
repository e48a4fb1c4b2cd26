"""yolox-sdk plugin: CoreML ML Program export (``coreml`` exporter) and inference on macOS (``coreml`` runtime).

Imported whenever yolox-sdk builds its registry, so it declares only the options classes and the hooks;
``coremltools`` (seconds to import, with torch) is imported when a model is exported or loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from yolox_sdk.config.validators import boolean, number, one_of
from yolox_sdk.plugins import hookimpl
from yolox_sdk.plugins.hookspecs import Register

if TYPE_CHECKING:
    from yolox_sdk_coreml.exporter import CoreMLExporter
    from yolox_sdk_coreml.runtime import CoreMLRuntime

__version__ = "0.1.0"

PRECISIONS = ("fp16", "fp32")
# ML Programs need iOS 15 / macOS 12 or later; the names are coremltools' ``ct.target`` members (the
# ``26`` ones need coremltools 9).
DEPLOYMENT_TARGETS = (
    "iOS15",
    "iOS16",
    "iOS17",
    "iOS18",
    "iOS26",
    "macOS12",
    "macOS13",
    "macOS14",
    "macOS15",
    "macOS26",
    "tvOS15",
    "tvOS16",
    "tvOS17",
    "tvOS18",
    "tvOS26",
    "watchOS8",
    "watchOS9",
    "watchOS10",
    "watchOS11",
    "watchOS26",
)
COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")


@attrs.frozen
class CoreMLExportOptions:
    """Options of the ``coreml`` exporter (``export.options.coreml`` in the config).

    Attributes:
        precision: ``fp16`` (default, what the Neural Engine and GPU compute in) stores weights and
            activations in float16 (half the package); ``fp32`` keeps float32 throughout. The input and
            the output are float32 either way.
        minimum_deployment_target: the oldest OS the package must run on (a ``coremltools.target`` name);
            an ML Program needs ``iOS15``/``macOS12`` or later, newer targets allow newer operations.
        tolerance: largest absolute difference from PyTorch accepted on the sample images for ``fp32``;
            decoded boxes are compared as fractions of the input size.
        fp16_tolerance: the same for ``fp16``. Rounding every activation to float16 moved the
            objectness of an uncertain anchor (0.33) by 0.16 on a coco8 image (yolox-nano, 256x224; boxes
            of anchors scoring 0.05 or more by at most 0.014 of the input), so this check catches a broken
            graph only: measure mAP on the device before deploying.
        nms: end the package in CoreML's non-maximum suppression, for apps using Apple's Vision framework:
            a pipeline taking a BGR ``image`` (letterbox it yourself, see the README) and returning
            ``confidence`` (boxes x classes) and ``coordinates`` (boxes x 4, centre x/y, width, height as
            fractions of the input), labels from the class names. yolox-sdk's ``predict``/``eval`` need the
            package without it (they run their own NMS on the decoded rows).
        iou_threshold: the NMS stage's IoU threshold; default: the checkpoint's ``evaluation.nms_threshold``
            when the export metadata has it, else 0.45 (predict's default).
        confidence_threshold: the NMS stage's score threshold; default: the checkpoint's recommended
            threshold when it has one, else 0.3 (predict's default).
    """

    precision: str = attrs.field(default="fp16", validator=one_of(PRECISIONS))
    minimum_deployment_target: str = attrs.field(default="iOS15", validator=one_of(DEPLOYMENT_TARGETS))
    tolerance: float = attrs.field(default=1e-4, validator=number(0.0))
    fp16_tolerance: float = attrs.field(default=0.25, validator=number(0.0))
    nms: bool = attrs.field(default=False, validator=boolean())
    iou_threshold: float | None = attrs.field(default=None, validator=number(0.0, 1.0, optional=True))
    confidence_threshold: float | None = attrs.field(default=None, validator=number(0.0, 1.0, optional=True))

    @property
    def check_tolerance(self) -> float:
        """The tolerance the check applies to this precision."""
        return self.fp16_tolerance if self.precision == "fp16" else self.tolerance


@attrs.frozen
class CoreMLRuntimeOptions:
    """Options of the ``coreml`` runtime (``runtime.coreml``), used on macOS only.

    Attributes:
        compute_units: the ``coremltools.ComputeUnit`` CoreML may use: ``ALL`` (default: CPU, GPU and
            Neural Engine), ``CPU_ONLY``, ``CPU_AND_GPU`` or ``CPU_AND_NE``.
    """

    compute_units: str = attrs.field(default="ALL", validator=one_of(COMPUTE_UNITS))


def create_exporter(options: CoreMLExportOptions | None = None) -> CoreMLExporter:
    """Factory of the ``coreml`` exporter (coremltools is imported when it exports)."""
    from yolox_sdk_coreml.exporter import CoreMLExporter

    return CoreMLExporter(options or CoreMLExportOptions())


def create_runtime(options: CoreMLRuntimeOptions | None = None) -> CoreMLRuntime:
    """Factory of the ``coreml`` runtime (coremltools is imported when a package is loaded)."""
    from yolox_sdk_coreml.runtime import CoreMLRuntime

    return CoreMLRuntime(options or CoreMLRuntimeOptions())


@hookimpl
def register_exporters(register: Register) -> None:
    """Register the ``coreml`` exporter."""
    register(
        "coreml",
        create_exporter,
        options=CoreMLExportOptions,
        description="CoreML ML Program (.mlpackage, fp16 or fp32); spec and saved program checked on any OS, "
        "CoreML prediction on macOS",
    )


@hookimpl
def register_runtimes(register: Register) -> None:
    """Register the ``coreml`` runtime."""
    register(
        "coreml",
        create_runtime,
        options=CoreMLRuntimeOptions,
        description="CoreML .mlpackage folders exported by yolox-sdk (macOS only: CoreML is part of the OS)",
    )
