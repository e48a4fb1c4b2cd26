"""Datasets by name (``bccd``): offline mirror, then the cache, then a download of the public source.

A name is looked up in the ``datasets`` section of the mirror catalogs (``$YOLOX_SDK_ASSETS``), then in
the cache folder ``$YOLOX_SDK_HOME/datasets/<name>``, and finally, for the datasets listed in
``DATASET_SOURCES``, downloaded. A download is extracted into a temporary folder beside the cache folder,
checked (it must hold the expected number of annotation files) and only then renamed into place, so an
interrupted download never leaves a cache folder that looks complete.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import attrs

from yolox_sdk.assets.catalog import cache_home, find_in_mirrors, mirror_dirs, mirror_error
from yolox_sdk.assets.download import download
from yolox_sdk.errors import DataUnavailableError, WeightsError, did_you_mean

log = logging.getLogger(__name__)


@attrs.frozen
class DatasetSource:
    """Where a named dataset is published and how to check a download of it.

    Attributes:
        url: the zip archive.
        folder: the folder inside the archive that is the dataset root (found at any depth).
        check_folder: a folder of the dataset root whose files are counted to verify the download.
        check_suffix: the suffix of the counted files.
        expected_count: how many such files a complete download holds.
        format: the dataset format plugin that reads it.
    """

    url: str
    folder: str
    check_folder: str
    check_suffix: str
    expected_count: int
    format: str

    @property
    def archive_name(self) -> str:
        """The archive's file name, appended to a base URL override."""
        return self.url.rsplit("/", 1)[-1]


DATASET_SOURCES: dict[str, DatasetSource] = {
    "bccd": DatasetSource(
        url="https://github.com/Shenggan/BCCD_Dataset/archive/d272fb14cdff6e473fafeeeba32aba5f560e9e43.zip",
        folder="BCCD",
        check_folder="Annotations",
        check_suffix=".xml",
        expected_count=364,
        format="voc",
    ),
}


@attrs.frozen
class ResolvedDataset:
    """A dataset name resolved to a folder.

    Attributes:
        path: the dataset root.
        format: the format the catalog or the source declares, or ``None`` when unknown.
        origin: ``"mirror"``, ``"cache"`` or ``"download"``.
    """

    path: Path
    format: str | None
    origin: str


def known_dataset_names() -> list[str]:
    """Names that ``resolve_dataset`` can find: downloadable sources, mirror catalogs, the cache."""
    names = set(DATASET_SOURCES)
    for mirror in mirror_dirs():
        names.update(_catalog_dataset_names(mirror))
    cache = cache_home() / "datasets"
    if cache.is_dir():
        names.update(p.name for p in cache.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(names)


def _catalog_dataset_names(mirror: Path) -> list[str]:
    try:
        catalog = json.loads((mirror / "catalog.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    datasets = catalog.get("datasets", {}) if isinstance(catalog, dict) else {}
    return list(datasets) if isinstance(datasets, dict) else []


def _count_files(folder: Path, suffix: str) -> int:
    return sum(1 for path in folder.glob(f"*{suffix}") if path.is_file()) if folder.is_dir() else 0


def _check_complete(root: Path, source: DatasetSource, origin: str) -> None:
    found = _count_files(root / source.check_folder, source.check_suffix)
    if found != source.expected_count:
        raise DataUnavailableError(
            f"{origin} {root} holds {found} {source.check_suffix} files in {source.check_folder}/, expected "
            f"{source.expected_count}: it is incomplete or not the published dataset. Delete it to download again."
        )


def locate_dataset(name: str, base_url: str | None = None) -> ResolvedDataset:
    """Find the dataset called ``name``: mirror, cache, then download.

    Args:
        name: a dataset name (``bccd``).
        base_url: replaces the folder of the source URL (a mirror of the archive, a test server).

    Raises:
        DatasetError: the name is unknown, or the download fails or is incomplete.
    """
    source = DATASET_SOURCES.get(name)
    hit = find_in_mirrors("datasets", name)
    if hit is not None:
        log.info("Dataset %s: offline mirror %s", name, hit.path)
        return ResolvedDataset(hit.path, hit.entry.get("format") or (source and source.format), "mirror")
    cached = cache_home() / "datasets" / name
    if cached.is_dir():
        if source is not None:
            _check_complete(cached, source, "The cached dataset")
        log.info("Dataset %s: cache %s", name, cached)
        return ResolvedDataset(cached, source.format if source else None, "cache")
    if source is None:
        names = known_dataset_names()
        hint = f"{did_you_mean(name, names)} Known dataset names: {', '.join(names) or 'none'}.".strip()
        raise mirror_error("datasets", name, f"{hint} Give a path to the dataset instead.")
    return ResolvedDataset(download_dataset(name, source, base_url), source.format, "download")


def resolve_dataset(name: str, base_url: str | None = None) -> Path:
    """The root folder of the dataset called ``name`` (see ``locate_dataset``)."""
    return locate_dataset(name, base_url).path


def download_dataset(name: str, source: DatasetSource, base_url: str | None = None) -> Path:
    """Download ``source``'s archive and extract its dataset folder to ``$YOLOX_SDK_HOME/datasets/<name>``."""
    datasets = cache_home() / "datasets"
    target = datasets / name
    url = f"{base_url.rstrip('/')}/{source.archive_name}" if base_url else source.url
    archive = datasets / ".downloads" / f"{name}-{source.archive_name}"
    log.info("Dataset %s: downloading %s", name, url)
    try:
        download(url, archive)
    except WeightsError as error:
        raise mirror_error("datasets", name, str(error)) from error
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=datasets))
    try:
        _extract_folder(archive, source.folder, staging)
        _check_complete(staging, source, f"The download of {url}, extracted to")
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # another process did not win the race: a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)
    return target


def _extract_folder(archive: Path, folder: str, dest: Path) -> None:
    """Extract the members under the shallowest ``<...>/folder/`` of ``archive`` into ``dest``."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if not m.is_dir()]
            prefix = _dataset_prefix([PurePosixPath(m.filename) for m in members], folder, archive)
            for member in members:
                parts = PurePosixPath(member.filename).parts
                if parts[: len(prefix)] != prefix:
                    continue
                relative = parts[len(prefix) :]
                if any(part in ("..", "") for part in relative) or member.filename.startswith("/"):
                    raise DataUnavailableError(
                        f"{archive} holds an unsafe path {member.filename!r}; refusing to extract."
                    )
                out = dest.joinpath(*relative)
                out.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as reader, open(out, "wb") as writer:
                    shutil.copyfileobj(reader, writer)
    except zipfile.BadZipFile as error:
        raise DataUnavailableError(
            f"{archive} is not a valid zip archive ({error}). Try the download again."
        ) from error


def _dataset_prefix(paths: list[PurePosixPath], folder: str, archive: Path) -> tuple[str, ...]:
    """The shallowest ``.../folder`` directory in the archive (a nested namesake is not the dataset)."""
    prefixes = {path.parts[: path.parts.index(folder) + 1] for path in paths if folder in path.parts[:-1]}
    if not prefixes:
        raise DataUnavailableError(f"{archive} has no '{folder}/' folder: it is not the expected archive.")
    return min(prefixes, key=lambda prefix: (len(prefix), prefix))
