"""Run directories: ``<output_dir>/<run_name>``, never overwriting an earlier run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yolox_sdk.config.loader import config_to_dict, dump_config
from yolox_sdk.config.schema import Config

CONFIG_FILENAME = "config.yaml"


def config_hash(config: Config) -> str:
    """A short, stable hash of the resolved config (what makes two runs "the same experiment")."""
    return config_dict_hash(config_to_dict(config))


def config_dict_hash(data: Mapping[str, Any]) -> str:
    """``config_hash`` of a config as plain data (a run's config.yaml read back).

    Free-form plugin options may mix key types (``{1: a, b: c}``), which ``sort_keys`` cannot order; those
    keys are hashed as strings. Configs without such keys keep the hash they always had.
    """
    try:
        text = json.dumps(data, sort_keys=True, default=str)
    except TypeError:
        text = json.dumps(_string_keys(data), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _string_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {f"{type(key).__name__}:{key}": _string_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_string_keys(item) for item in value]
    return value


def default_run_name(config: Config) -> str:
    """``<model name>-<config hash>`` unless ``monitoring.run_name`` is set."""
    return config.monitoring.run_name or f"{config.model.name}-{config_hash(config)}"


def new_run_dir(config: Config) -> Path:
    """Make a new, empty run folder; if the name is taken, append ``-2``, ``-3``, ... (an earlier run is
    never touched). The caller locks it (``engine.run_lock``) before writing into it."""
    base = Path(config.monitoring.output_dir) / default_run_name(config)
    candidate, counter = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            counter += 1
            candidate = base.with_name(f"{base.name}-{counter}")


def write_run_config(run_dir: Path, config: Config) -> None:
    """Save the resolved config as the run's ``config.yaml`` (what makes the folder a run directory)."""
    (run_dir / CONFIG_FILENAME).write_text(dump_config(config), encoding="utf-8")
