"""Evaluation (COCO mAP with pycocotools), prediction on images, and the postprocessing they share.

``evaluate_model`` is the one evaluation: training, ``yolox-sdk run`` and ``yolox-sdk eval`` call it with an
``EvaluationConfig`` (``evaluation.runner``).
"""

from yolox_sdk.evaluation.coco_eval import ClassAP, EvalResult, detect_dataset, evaluate, evaluate_detections
from yolox_sdk.evaluation.postprocess import ImageDetections, postprocess
from yolox_sdk.evaluation.predict import Detection, Predictor, predict_to_folder
from yolox_sdk.evaluation.runner import (
    checkpoint_evaluation_settings,
    evaluate_checkpoint_weights,
    evaluate_model,
    evaluation_settings,
)

__all__ = [
    "ClassAP",
    "Detection",
    "EvalResult",
    "ImageDetections",
    "Predictor",
    "checkpoint_evaluation_settings",
    "detect_dataset",
    "evaluate",
    "evaluate_checkpoint_weights",
    "evaluate_detections",
    "evaluate_model",
    "evaluation_settings",
    "postprocess",
    "predict_to_folder",
]
