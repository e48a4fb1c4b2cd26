"""Small real datasets in every format, and the helpers the hostile-input tests share.

Each dataset is three BCCD images written by the SDK's own writers (as ``data convert`` would), so the
hostile variants start from files exactly like the ones users have. LabelMe is the first-party plugin in
``plugins/yolox-sdk-labelme``: it is used when importable, from the venv or from its source folder.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import attrs
import pytest
from click.testing import CliRunner

from yolox_sdk.cli.main import cli
from yolox_sdk.data.formats import load_dataset
from yolox_sdk.plugins import manager
from yolox_sdk.plugins.registry import Registry
from yolox_sdk.testing import use_registry

REPO_ROOT = Path(__file__).resolve().parents[1]
LABELME_SOURCE = REPO_ROOT / "plugins" / "yolox-sdk-labelme"
BUILT_IN_FORMATS = ("coco", "yolo", "voc", "cvat", "createml", "kitti", "csv")
IMAGES = 3
BUG_TEXT = ("Traceback", "This is a bug", "Unexpected error")


def labelme_plugin() -> ModuleType | None:
    """The LabelMe plugin package: installed, else imported from its source folder; ``None`` if neither."""
    try:
        return importlib.import_module("yolox_sdk_labelme")
    except ImportError:
        pass
    sys.path.insert(0, str(LABELME_SOURCE))
    try:
        return importlib.import_module("yolox_sdk_labelme")
    except ImportError:
        sys.path.remove(str(LABELME_SOURCE))
        return None


def formats() -> list[str]:
    """Every format the hostile tests cover: the built-ins, plus ``labelme`` when its plugin imports."""
    return [*BUILT_IN_FORMATS, *(["labelme"] if labelme_plugin() is not None else [])]


def registry_with_labelme() -> Registry:
    """A registry of the installed plugins plus the LabelMe plugin (when it is not installed already)."""
    plugin = labelme_plugin()
    extra = [("labelme", plugin)] if plugin is not None else []
    _, registry = manager.build_plugin_manager(extra)
    if "labelme" in manager.get_registry().names("dataset_format"):
        return manager.get_registry()
    return registry


@contextmanager
def process_registry(registry: Registry) -> Iterator[None]:
    """Make ``registry`` the process-wide one (what the CLI uses) for the duration of the block."""
    with use_registry(registry):
        yield


def write_small_datasets(bccd_dir: Path, out: Path, registry: Registry) -> dict[str, Path]:
    """``IMAGES`` BCCD images written once per format under ``out/<format>``; returns the folders."""
    bccd = load_dataset(bccd_dir, split="test", format="voc")
    small = attrs.evolve(bccd, records=bccd.records[:IMAGES])
    folders = {}
    for name in formats():
        entry = registry.get("dataset_format", name)
        entry.factory(entry.options() if entry.options is not None else None).save(small, out / name)
        folders[name] = out / name
    return folders


def annotation_files(name: str, root: Path) -> list[Path]:
    """The annotation and label files of a dataset written by ``write_small_datasets``."""
    patterns = {
        "coco": ["annotations.json"],
        "yolo": ["data.yaml", "labels/*.txt"],
        "voc": ["Annotations/*.xml", "ImageSets/Main/*.txt"],
        "cvat": ["annotations.xml"],
        "createml": ["annotations.json"],
        "kitti": ["label_2/*.txt"],
        "csv": ["annotations.csv"],
        "labelme": ["*.json"],
    }[name]
    return sorted(path for pattern in patterns for path in root.glob(pattern))


def image_files(root: Path) -> list[Path]:
    """The image files of a written dataset."""
    return sorted(path for path in root.rglob("*.jpg"))


def invoke(*args: object) -> tuple[int, str]:
    """Run the CLI in-process; returns the exit code and everything it printed."""
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    return result.exit_code, result.output


def assert_no_bug(output: str) -> None:
    """The CLI answered with its own words, not a traceback or the catch-all for bugs."""
    for text in BUG_TEXT:
        assert text not in output, output


@pytest.fixture(scope="module")
def labelme_registry() -> Registry:
    return registry_with_labelme()


@pytest.fixture(scope="module")
def small_datasets(
    bccd_dir: Path, tmp_path_factory: pytest.TempPathFactory, labelme_registry: Registry
) -> dict[str, Path]:
    return write_small_datasets(bccd_dir, tmp_path_factory.mktemp("small_datasets"), labelme_registry)
