"""Evaluation (COCO mAP with pycocotools), prediction on images, and the postprocessing they share."""

from yolox_sdk.evaluation.coco_eval import ClassAP, EvalResult, detect_dataset, evaluate, evaluate_detections
from yolox_sdk.evaluation.postprocess import ImageDetections, postprocess
from yolox_sdk.evaluation.predict import Detection, Predictor, predict_to_folder

__all__ = [
    "ClassAP",
    "Detection",
    "EvalResult",
    "ImageDetections",
    "Predictor",
    "detect_dataset",
    "evaluate",
    "evaluate_detections",
    "postprocess",
    "predict_to_folder",
]
