"""Configuration: attrs schema, YAML loading with overrides, strict validation."""

from yolox_sdk.config.loader import apply_overrides, dump_config, load_config
from yolox_sdk.config.schema import Config

__all__ = ["Config", "apply_overrides", "dump_config", "load_config"]
