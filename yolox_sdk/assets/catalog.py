"""Resolving named weights and datasets: offline mirrors first, then the cache, then the official source.

``$YOLOX_SDK_ASSETS`` lists offline mirror folders (``os.pathsep``-separated). A mirror has a
``catalog.json`` at its root mapping names (``yolox-nano``, ``bccd``) to files or folders, with a sha256 for
weights; a catalogued file is verified against the catalog's sha256, not the official one, because a mirror
may hold a rebuilt file. Mirrors are read-only: nothing is ever written there. Downloads go to the cache,
``$YOLOX_SDK_HOME`` (default ``~/.cache/yolox_sdk``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import attrs

from yolox_sdk.errors import DatasetError, WeightsError

ASSETS_ENV = "YOLOX_SDK_ASSETS"
HOME_ENV = "YOLOX_SDK_HOME"

log = logging.getLogger(__name__)


def cache_home() -> Path:
    """The cache folder for downloads: ``$YOLOX_SDK_HOME`` or ``~/.cache/yolox_sdk``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "yolox_sdk").expanduser()


def mirror_dirs() -> list[Path]:
    """Offline mirror folders from ``$YOLOX_SDK_ASSETS``, in order."""
    raw = os.environ.get(ASSETS_ENV, "")
    return [Path(part).expanduser().resolve() for part in raw.split(os.pathsep) if part.strip()]


@attrs.frozen
class CatalogHit:
    """A name found in a mirror's catalog."""

    path: Path
    sha256: str | None
    mirror: Path
    entry: dict[str, Any]


def _read_catalog(mirror: Path) -> dict[str, Any]:
    catalog = mirror / "catalog.json"
    if not catalog.is_file():
        return {}
    try:
        return json.loads(catalog.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        log.warning("Ignoring %s: %s", catalog, error)
        return {}


def find_in_mirrors(section: str, name: str) -> CatalogHit | None:
    """The first mirror entry for ``name`` in the catalog ``section`` (``weights`` or ``datasets``)."""
    for mirror in mirror_dirs():
        entry = _read_catalog(mirror).get(section, {}).get(name)
        if not entry:
            continue
        relative = entry.get("file") or entry.get("path")
        path = (mirror / relative).resolve()
        if path.exists():
            return CatalogHit(path, entry.get("sha256"), mirror, entry)
        log.warning("%s lists %s as %s, which does not exist; skipping that mirror", mirror, name, path)
    return None


def mirror_error(kind: str, name: str, hint: str) -> Exception:
    """The error for a name that no mirror holds and that cannot be downloaded."""
    mirrors = ", ".join(str(m) for m in mirror_dirs()) or f"none (${ASSETS_ENV} is not set)"
    error_type = WeightsError if kind == "weights" else DatasetError
    return error_type(
        f"No {kind} named '{name}' in the offline mirrors ({mirrors}) or the cache {cache_home()}. {hint}"
    )
