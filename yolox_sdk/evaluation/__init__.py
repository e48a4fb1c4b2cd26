"""Evaluation (COCO mAP by faster-coco-eval, per-image matches by pycocotools), prediction on images, and
the postprocessing they share.

``evaluate_model`` is the one evaluation: training, ``yolox-sdk run`` and ``yolox-sdk eval`` call it with an
``EvaluationConfig`` (``evaluation.runner``). ``analyse_evaluation`` turns its result into an
``EvaluationReport``: precision-recall and F1 curves (``curves``), the recommended confidence threshold,
the confusion matrix (``confusion``), the TIDE-style error analysis (``error_analysis``), their figures
(``plots``) and the worst images (``gallery``).
"""

from yolox_sdk.evaluation.coco_eval import ClassAP, EvalResult, detect_dataset, evaluate, evaluate_detections
from yolox_sdk.evaluation.postprocess import ImageDetections, postprocess
from yolox_sdk.evaluation.predict import Detection, Predictor, predict_to_folder
from yolox_sdk.evaluation.report import EvaluationReport, analyse_evaluation
from yolox_sdk.evaluation.runner import (
    checkpoint_evaluation_settings,
    dataset_for_checkpoint,
    evaluate_checkpoint_weights,
    evaluate_model,
    evaluation_settings,
)

__all__ = [
    "ClassAP",
    "Detection",
    "EvalResult",
    "EvaluationReport",
    "ImageDetections",
    "Predictor",
    "analyse_evaluation",
    "checkpoint_evaluation_settings",
    "dataset_for_checkpoint",
    "detect_dataset",
    "evaluate",
    "evaluate_checkpoint_weights",
    "evaluate_detections",
    "evaluate_model",
    "evaluation_settings",
    "postprocess",
    "predict_to_folder",
]
