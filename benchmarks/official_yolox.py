"""The official YOLOX trainer as a benchmark baseline: yolox-nano finetuned on BCCD (Pascal VOC).

This module runs the ``yolox`` package's own ``Trainer`` (``yolox.core.Trainer``, started through the package's
own ``yolox.cli.train.train``) with a ``YoloxNano`` config that points at the BCCD VOC folder, and evaluates with
the package's own ``CocoEvaluator`` (pycocotools, COCO-style AP over IoU 0.50:0.95). Nothing in the installed
package is edited; what this module adds is configuration and glue, every piece listed here:

Configuration (official pattern: subclass the config, as the repo's ``exps/example/yolox_voc`` does)
    ``BccdVocNano`` keeps YoloxNano's recipe (depthwise 0.33/0.25, mosaic_prob 0.5, mosaic_scale (0.5, 1.5), no
    mixup, SGD nesterov with ``basic_lr_per_img`` 0.01/64, warm cosine, EMA) and overrides only the data: training
    reads ``VocDetection`` + ``TrainTransform`` (the official VOC loader), evaluation reads ``VocDetection`` +
    ``ValTransform``. The benchmark also passes the short-budget schedule (warm-up and no-aug epochs) and turns
    multi-scale training off so both trainers see one image size.

Data glue (needed on every device)
    * ``build_voc_devkit``: ``VocDetection`` wants ``<root>/VOC<year>/{Annotations,JPEGImages,ImageSets/Main}``.
      A temporary folder holds symlinks to BCCD's ``Annotations`` and ``JPEGImages`` and copies of the split
      files, so nothing is written into the read-only assets (the VOC code writes caches under ``<root>``).
    * ``stack_images_and_targets``: the official training loader crashes in torch's default collate
      (``AttributeError: 'int' object has no attribute 'numel'``: mosaic and non-mosaic samples carry
      ``img_info``/``img_id`` of different types). The collate stacks images and targets and passes the rest
      through as lists, which is all ``Trainer`` reads.
    * ``CocoGtVocDetection``: the official ``CocoEvaluator`` needs ``dataset.coco``, a pycocotools ground truth.
      It is built from the official VOC annotation parse (``AnnotationTransform``, which subtracts 1 from every
      coordinate), so the evaluator scores against exactly the boxes the official trainer learns from.

CPU device shim (``cpu_device_shim``; applied only when ``device == "cpu"``, only inside this process, and
undone afterwards; on CUDA the trainer runs unmodified)
    1. ``torch.cuda.set_device`` -> no-op (``Trainer.before_train`` calls it unconditionally).
    2. ``Trainer.device`` -> ``"cpu"`` on the instance (``Trainer.__init__`` hard-codes ``"cuda:<rank>"``; the
       model, the resumed checkpoint's ``map_location`` and nothing else use it).
    3. ``yolox.core.trainer.DataPrefetcher`` -> ``CpuDataPrefetcher`` (the official one copies batches on a
       ``torch.cuda.Stream``); it yields the same ``(images, targets)`` one batch ahead.
    4. ``torch.cuda.FloatTensor`` / ``torch.cuda.HalfTensor`` -> ``torch.FloatTensor`` / ``torch.HalfTensor``
       (the evaluators cast images with ``imgs.type(torch.cuda.FloatTensor)`` and build a statistics tensor).
    5. ``torch.Tensor.cuda`` -> identity (``YoloxConfig.random_resize`` and the head's out-of-memory fallback
       call ``.cuda()``; with multi-scale off neither runs, the patch is a safety net).
    Everything else (``torch.cuda.amp`` autocast/GradScaler with fp16 off, ``torch.cuda.empty_cache``,
    ``torch.cuda.max_memory_allocated``) already works on a CPU-only torch.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from argparse import Namespace
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

BCCD_CLASSES: tuple[str, ...] = ("RBC", "WBC", "Platelets")
# VOC years from 2010 on use the area-under-curve AP in the official VOC evaluator; the year is only a folder name.
VOC_YEAR = "2012"
OFFICIAL_MODEL_NAME = "official"


# --------------------------------------------------------------------------------------------------------------
# Data glue
# --------------------------------------------------------------------------------------------------------------
def build_voc_devkit(
    data_dir: str | Path, root: str | Path, splits: Sequence[str], max_images: int | None = None
) -> Path:
    """Lay out ``data_dir`` (a VOC folder without a year) as the ``VOCdevkit/VOC<year>`` tree VocDetection reads.

    Args:
        data_dir: the VOC folder holding ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/<split>.txt``.
        root: an empty, writable folder; the devkit is built inside it.
        splits: the split names to expose.
        max_images: keep only the first N ids of each split (smoke tests).

    Returns:
        The devkit root to pass as ``VocDetection(data_dir=...)``.
    """
    data_dir = Path(data_dir).resolve()
    devkit = Path(root) / "VOCdevkit"
    year_dir = devkit / f"VOC{VOC_YEAR}"
    (year_dir / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for name in ("Annotations", "JPEGImages"):
        link = year_dir / name
        if not link.exists():
            link.symlink_to(data_dir / name, target_is_directory=True)
    for split in splits:
        source = data_dir / "ImageSets" / "Main" / f"{split}.txt"
        ids = [line.strip() for line in source.read_text().splitlines() if line.strip()]
        if max_images is not None:
            ids = ids[:max_images]
        (year_dir / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return devkit


def stack_images_and_targets(batch: list[tuple[Any, ...]]) -> tuple[torch.Tensor, torch.Tensor, list, list]:
    """Collate for the official training loader: stack images and padded targets, keep the rest as lists."""
    images, targets, image_infos, image_ids = zip(*batch, strict=True)
    return (
        torch.from_numpy(np.ascontiguousarray(np.stack(images))),
        torch.from_numpy(np.ascontiguousarray(np.stack(targets))),
        list(image_infos),
        list(image_ids),
    )


def _voc_dataset_classes(drop_zero_area_boxes: bool = False) -> tuple[type, type]:
    from yolox.data.datasets.voc import AnnotationTransform, VocDetection

    class CocoGtVocDetection(VocDetection):
        """The official VOC dataset plus the pycocotools ground truth ``CocoEvaluator`` reads as ``.coco``."""

        @property
        def coco(self) -> Any:
            if getattr(self, "_coco", None) is None:
                self._coco = self._build_coco_ground_truth()
            return self._coco

        def _build_coco_ground_truth(self) -> Any:
            from pycocotools.coco import COCO

            class_names = sorted(
                self.target_transform.class_to_ind, key=self.target_transform.class_to_ind.get
            )
            images, annotations = [], []
            for index, image_key in enumerate(self.ids):
                # The same parse the official trainer learns from (0-based: every coordinate minus 1).
                boxes, (height, width) = self.target_transform(ET.parse(self._annopath % image_key).getroot())
                images.append({"id": index, "width": width, "height": height, "file_name": image_key[1]})
                for x1, y1, x2, y2, label in boxes.tolist():
                    if drop_zero_area_boxes and (x2 <= x1 or y2 <= y1):
                        continue
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": index,
                            "category_id": int(label),
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "area": (x2 - x1) * (y2 - y1),
                            "iscrowd": 0,
                        }
                    )
            coco = COCO()
            coco.dataset = {
                "info": {},
                "images": images,
                "annotations": annotations,
                "categories": [{"id": i, "name": name} for i, name in enumerate(class_names)],
            }
            with contextlib.redirect_stdout(io.StringIO()):
                coco.createIndex()
            return coco

    return CocoGtVocDetection, AnnotationTransform


def _class_to_index(class_names: Sequence[str]) -> dict[str, int]:
    return {name: index for index, name in enumerate(class_names)}


# --------------------------------------------------------------------------------------------------------------
# The official config, pointed at BCCD
# --------------------------------------------------------------------------------------------------------------
def make_official_config(
    devkit: str | Path,
    *,
    train_split: str = "train",
    val_split: str = "val",
    class_names: Sequence[str] = BCCD_CLASSES,
    input_size: tuple[int, int] = (416, 416),
    epochs: int = 10,
    num_workers: int = 0,
    seed: int | None = 0,
    warmup_epochs: int | None = None,
    no_aug_epochs: int | None = None,
    multiscale: bool = False,
    output_dir: str | Path = "./out",
    drop_zero_area_boxes: bool = False,
) -> Any:
    """Build a ``YoloxNano`` config (the official nano recipe) whose data is the VOC devkit at ``devkit``.

    ``warmup_epochs``/``no_aug_epochs`` of ``None`` keep the recipe's own (5 and 15, meant for 300 epochs).
    ``multiscale=False`` pins the training size to ``input_size`` (the nano recipe's ``random_size=(10, 20)``
    would draw 320-640 every 10 iterations). ``drop_zero_area_boxes`` only changes the evaluation ground truth
    (a diagnostic, see ``evaluate_official``).
    """
    from yolox.config import YoloxNano
    from yolox.data import TrainTransform, ValTransform

    dataset_class, annotation_transform = _voc_dataset_classes(drop_zero_area_boxes)
    class_to_index = _class_to_index(class_names)

    class BccdVocNano(YoloxNano):
        """YoloxNano reading the BCCD VOC devkit; records evaluation results and time for the benchmark."""

        def __init__(self) -> None:
            super().__init__()
            self.num_classes = len(class_names)
            self.data_dir = str(devkit)
            self.input_size = tuple(input_size)
            self.test_size = tuple(input_size)
            self.max_epoch = epochs
            self.data_num_workers = num_workers
            self.seed = seed
            self.eval_interval = epochs  # evaluate once, after the last epoch (no-aug epochs add their own)
            self.output_dir = str(output_dir)
            if warmup_epochs is not None:
                self.warmup_epochs = warmup_epochs
            if no_aug_epochs is not None:
                self.no_aug_epochs = no_aug_epochs
            self.multiscale = multiscale
            self.evaluations: list[tuple[float, float]] = []
            self.eval_seconds = 0.0
            self.trainer: Any = None
            self.device = "cuda"

        def get_dataset(self, cache: bool = False, cache_type: str = "ram") -> Any:
            return dataset_class(
                data_dir=self.data_dir,
                image_sets=[(VOC_YEAR, train_split)],
                img_size=self.input_size,
                preproc=TrainTransform(max_labels=50, flip_prob=self.flip_prob, hsv_prob=self.hsv_prob),
                target_transform=annotation_transform(class_to_ind=class_to_index),
                cache=cache,
                cache_type=cache_type,
            )

        def get_data_loader(self, batch_size, is_distributed, no_aug=False, cache_img=None):  # noqa: ANN001
            loader = super().get_data_loader(batch_size, is_distributed, no_aug=no_aug, cache_img=cache_img)
            loader.collate_fn = stack_images_and_targets
            return loader

        def get_eval_dataset(self, **kwargs: Any) -> Any:
            return dataset_class(
                data_dir=self.data_dir,
                image_sets=[(VOC_YEAR, val_split)],
                img_size=self.test_size,
                preproc=ValTransform(legacy=kwargs.get("legacy", False)),
                target_transform=annotation_transform(class_to_ind=class_to_index),
            )

        def random_resize(self, data_loader, epoch, rank, is_distributed):  # noqa: ANN001
            if not self.multiscale:
                return tuple(self.input_size)
            return super().random_resize(data_loader, epoch, rank, is_distributed)

        def eval(self, model, evaluator, is_distributed, half=False, return_outputs=False):  # noqa: ANN001
            start = time.perf_counter()
            result = super().eval(model, evaluator, is_distributed, half=half, return_outputs=return_outputs)
            self.eval_seconds += time.perf_counter() - start
            ap50_95, ap50, _summary = result[0] if return_outputs else result
            self.evaluations.append((float(ap50_95), float(ap50)))
            return result

        def get_trainer(self, args: Namespace) -> Any:
            trainer = super().get_trainer(args)
            if self.device == "cpu":
                trainer.device = "cpu"  # shim 2: Trainer.__init__ hard-codes "cuda:<local_rank>"
            self.trainer = trainer
            return trainer

    return BccdVocNano()


# --------------------------------------------------------------------------------------------------------------
# CPU device shim
# --------------------------------------------------------------------------------------------------------------
class CpuDataPrefetcher:
    """Drop-in for ``yolox.data.DataPrefetcher`` without CUDA streams: same ``next()``, one batch ahead."""

    def __init__(self, loader: Any) -> None:
        self.loader = iter(loader)
        self.preload()

    def preload(self) -> None:
        try:
            self.next_input, self.next_target, _, _ = next(self.loader)
        except StopIteration:
            self.next_input = None
            self.next_target = None

    def next(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        inputs, targets = self.next_input, self.next_target
        self.preload()
        return inputs, targets


@contextlib.contextmanager
def cpu_device_shim() -> Iterator[None]:
    """Let the CUDA-only official trainer and evaluators run on CPU; every patch is undone on exit."""
    import yolox.core.trainer as trainer_module

    saved = {
        "set_device": torch.cuda.set_device,
        "FloatTensor": torch.cuda.FloatTensor,
        "HalfTensor": torch.cuda.HalfTensor,
        "tensor_cuda": torch.Tensor.cuda,
        "prefetcher": trainer_module.DataPrefetcher,
    }
    torch.cuda.set_device = lambda device: None  # shim 1
    trainer_module.DataPrefetcher = CpuDataPrefetcher  # shim 3
    torch.cuda.FloatTensor = torch.FloatTensor  # shim 4
    torch.cuda.HalfTensor = torch.HalfTensor
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # shim 5
    try:
        yield
    finally:
        torch.cuda.set_device = saved["set_device"]
        torch.cuda.FloatTensor = saved["FloatTensor"]
        torch.cuda.HalfTensor = saved["HalfTensor"]
        torch.Tensor.cuda = saved["tensor_cuda"]
        trainer_module.DataPrefetcher = saved["prefetcher"]


@contextlib.contextmanager
def _restored_process_state() -> Iterator[None]:
    """Undo the official entry point's process-wide side effects so a second trainer in the process is unaffected.

    ``setup_logger`` redirects stdout/stderr into loguru, ``configure_module`` sets ``cv2.setNumThreads(0)``, and
    ``yolox.cli.train.train`` sets cudnn's ``deterministic`` and ``benchmark`` flags.
    """
    from loguru import logger

    stdout, stderr, cv2_threads = sys.stdout, sys.stderr, cv2.getNumThreads()
    cudnn = torch.backends.cudnn
    cudnn_flags = (cudnn.deterministic, cudnn.benchmark)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        logger.remove()
        logger.add(sys.stderr, level="WARNING")
        cv2.setNumThreads(cv2_threads)
        cudnn.deterministic, cudnn.benchmark = cudnn_flags


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cuda:N`` is reduced to ``cuda``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} asked for, but torch sees no CUDA device")
        return "cuda"
    if device != "cpu":
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    return device


def _device_context(device: str) -> contextlib.AbstractContextManager[None]:
    return cpu_device_shim() if device == "cpu" else contextlib.nullcontext()


def _seed_everything(seed: int | None) -> None:
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------------------
def train_official(
    data_dir: str | Path,
    weights_path: str | Path,
    epochs: int,
    batch_size: int,
    input_size: int | tuple[int, int],
    num_workers: int,
    device: str,
    out_dir: str | Path,
    seed: int | None = 0,
    *,
    train_split: str = "train",
    val_split: str = "val",
    warmup_epochs: int | None = None,
    no_aug_epochs: int | None = None,
    multiscale: bool = False,
    max_images: int | None = None,
) -> dict[str, Any]:
    """Finetune yolox-nano with the official ``Trainer`` on a VOC folder and evaluate it on the val split.

    The trainer is started the way ``python -m yolox.cli.train -c yolox_nano --ckpt <weights>`` starts it for
    one device (``configure_module`` then ``yolox.cli.train.train``): it loads the COCO weights with the
    official ``load_ckpt`` (tensors whose shape differs, the 80-class predictors, are skipped), trains with its
    own loader, optimizer, scheduler and EMA, and evaluates the EMA model with ``CocoEvaluator``.

    Args:
        data_dir: the VOC folder (``Annotations``, ``JPEGImages``, ``ImageSets/Main``).
        weights_path: an official-format checkpoint (``{"model": state_dict}``).
        epochs: training epochs.
        batch_size: images per iteration.
        input_size: training and evaluation size (int or (height, width)).
        num_workers: data loader workers.
        device: ``auto``, ``cpu`` or ``cuda``; ``cpu`` runs under ``cpu_device_shim``.
        out_dir: where the official trainer writes its logs and checkpoints, and where the final EMA weights
            are saved as ``official_final_ema.pth`` (``{"model": state_dict}``).
        seed: seed for the official entry point (``random``/``torch``; numpy too) and its sampler.
        train_split: image-set name for training.
        val_split: image-set name for evaluation.
        warmup_epochs: override the recipe's warm-up epochs.
        no_aug_epochs: override the recipe's closing epochs without mosaic (with L1 loss).
        multiscale: keep the nano recipe's random 320-640 training sizes.
        max_images: use only the first N ids of each split (smoke tests).

    Returns:
        A dict with ``wall_seconds`` (the trainer's ``train()``, setup and evaluation included),
        ``eval_seconds``, ``train_seconds`` (wall minus evaluation), ``train_images``, ``iterations``,
        ``train_images_per_second`` (train_images / train_seconds), ``mAP`` and ``mAP50`` (0-1, COCO-style, of
        the final EMA model), ``evaluations`` (every (mAP, mAP50) the trainer computed), ``checkpoint``,
        ``device`` and the effective recipe.
    """
    from yolox.cli.train import train as official_train
    from yolox.utils import configure_module

    device = resolve_device(device)
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    devkit_root = Path(tempfile.mkdtemp(prefix="official_voc_"))
    try:
        devkit = build_voc_devkit(data_dir, devkit_root, [train_split, val_split], max_images=max_images)
        config = make_official_config(
            devkit,
            train_split=train_split,
            val_split=val_split,
            input_size=size,
            epochs=epochs,
            num_workers=num_workers,
            seed=seed,
            warmup_epochs=warmup_epochs,
            no_aug_epochs=no_aug_epochs,
            multiscale=multiscale,
            output_dir=out_dir,
        )
        config.device = device
        config.validate()
        args = Namespace(
            name=OFFICIAL_MODEL_NAME,
            config="yolox_nano",
            batch_size=batch_size,
            devices=1,
            resume=False,
            ckpt=str(weights_path),
            start_epoch=None,
            fp16=False,
            cache=None,
            occupy=False,
            logger="tensorboard",
            num_machines=1,
            machine_rank=0,
            dist_backend="nccl",
            dist_url=None,
        )
        _seed_everything(seed)
        with _restored_process_state(), _device_context(device):
            configure_module()
            start = time.perf_counter()
            official_train(config, args)
            if device == "cuda":
                torch.cuda.synchronize()
            wall_seconds = time.perf_counter() - start

        trainer = config.trainer
        ema_model = trainer.ema_model.ema if trainer.use_model_ema else trainer.model
        checkpoint = out_dir / "official_final_ema.pth"
        torch.save({"model": {k: v.detach().cpu() for k, v in ema_model.state_dict().items()}}, checkpoint)
    finally:
        shutil.rmtree(devkit_root, ignore_errors=True)

    iterations = trainer.max_iter * epochs
    train_images = iterations * batch_size  # InfiniteSampler: every batch is full
    train_seconds = wall_seconds - config.eval_seconds
    final_ap, final_ap50 = config.evaluations[-1] if config.evaluations else (float("nan"), float("nan"))
    return {
        "trainer": "official",
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else _cpu_name(),
        "epochs": epochs,
        "batch_size": batch_size,
        "input_size": list(size),
        "num_workers": num_workers,
        "seed": seed,
        "warmup_epochs": config.warmup_epochs,
        "no_aug_epochs": config.no_aug_epochs,
        "multiscale": multiscale,
        "iterations": iterations,
        "train_images": train_images,
        "wall_seconds": wall_seconds,
        "eval_seconds": config.eval_seconds,
        "train_seconds": train_seconds,
        "train_images_per_second": train_images / train_seconds,
        "mAP": final_ap,
        "mAP50": final_ap50,
        "evaluations": config.evaluations,
        "checkpoint": str(checkpoint),
    }


def evaluate_official(
    checkpoint: str | Path,
    data_dir: str | Path,
    *,
    split: str = "val",
    input_size: int | tuple[int, int] = 416,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str = "auto",
    max_images: int | None = None,
    drop_zero_area_boxes: bool = False,
    clip_to_image: bool = False,
) -> dict[str, Any]:
    """Evaluate an official-format yolox-nano checkpoint with the official ``CocoEvaluator`` on a VOC split.

    Uses the recipe's evaluation settings (``test_conf`` 0.01, ``nmsthre`` 0.65, class-aware NMS). The two
    flags are diagnostics, off for the official figure: they adopt our evaluator's conventions (zero-area ground
    truth boxes dropped; predicted boxes clipped to the image) to show what a difference between the evaluators
    is made of.

    Returns:
        ``mAP`` and ``mAP50`` (0-1, pycocotools), ``seconds`` and the evaluator's text ``summary``.
    """
    device = resolve_device(device)
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    devkit_root = Path(tempfile.mkdtemp(prefix="official_voc_"))
    try:
        devkit = build_voc_devkit(data_dir, devkit_root, [split], max_images=max_images)
        config = make_official_config(
            devkit,
            train_split=split,
            val_split=split,
            input_size=size,
            num_workers=num_workers,
            drop_zero_area_boxes=drop_zero_area_boxes,
        )
        model = config.get_model()
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        model.to("cuda" if device == "cuda" else "cpu").eval()
        with _device_context(device):
            evaluator = config.get_evaluator(batch_size=batch_size, is_distributed=False)
            if clip_to_image:
                evaluator.convert_to_coco_format = _clipping(evaluator.convert_to_coco_format)
            start = time.perf_counter()
            with torch.no_grad():
                ap50_95, ap50, summary = config.eval(model, evaluator, False)
            seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(devkit_root, ignore_errors=True)
    return {"mAP": float(ap50_95), "mAP50": float(ap50), "seconds": seconds, "summary": summary}


def _clipping(convert_to_coco_format: Any) -> Any:
    """Wrap ``CocoEvaluator.convert_to_coco_format`` so predicted boxes are clipped to their image."""

    def convert(outputs, info_imgs, ids, return_outputs=False):  # noqa: ANN001
        data_list, image_wise = convert_to_coco_format(outputs, info_imgs, ids, return_outputs=True)
        sizes = {
            int(i): (float(h), float(w)) for h, w, i in zip(info_imgs[0], info_imgs[1], ids, strict=True)
        }
        for detection in data_list:
            height, width = sizes[detection["image_id"]]
            x, y, w, h = detection["bbox"]
            x1, y1, x2, y2 = max(0.0, x), max(0.0, y), min(width, x + w), min(height, y + h)
            detection["bbox"] = [x1, y1, x2 - x1, y2 - y1]
        return (data_list, image_wise) if return_outputs else data_list

    return convert


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"cpu ({os.cpu_count()} cores)"
