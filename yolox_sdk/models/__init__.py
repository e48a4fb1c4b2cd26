"""YOLOX models: variants, construction, pretrained weights and class-count surgery."""

from yolox_sdk.models.factory import build_model, create_model, model_from_checkpoint
from yolox_sdk.models.variants import ModelSpec, make_spec, variant_names

__all__ = ["ModelSpec", "build_model", "create_model", "make_spec", "model_from_checkpoint", "variant_names"]
