"""The two-stage cascade: the detector proposes boxes, the classifier confirms each crop.

``Cascade.load`` reads both models once, from PyTorch, ONNX or OpenVINO weights (``cascade.backends``);
``Cascade.run(images)`` handles a batch of slices and batches all their crops through the classifier in one
go. Everything inference needs about the classifier (crop rule, input size, normalisation, classes,
threshold) comes from its checkpoint, or from the contract an exported classifier carries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Queue

import numpy as np
import torch

from classify.checkpoint import CheckpointError, crop_rule_of
from classify.crops import crops_for_boxes, crops_for_boxes_batched, slice_for_crops
from classify.fusion import fused_score
from classify.presets import to_batch
from detect.model import trained_standardised
from mri.cli import check_device, torch_device


class WeightsError(ValueError):
    """Missing or invalid model weights: one line saying which file and how to get a good one."""


@dataclass
class Detection:
    box: list[float]  # x1 y1 x2 y2 in pixels
    det_score: float
    tumor_prob: float  # the classifier's P(tumor)
    type: str
    type_prob: float  # P(type | tumor)
    kept: bool
    crop: np.ndarray | None = None
    cam: np.ndarray | None = None
    classified: bool = True  # False for boxes beyond ``top_k`` (their tumor_prob and type_prob are NaN)
    score: float = float("nan")  # ranking score: classify.fusion.fused_score of det_score and tumor_prob

    def as_dict(self) -> dict:
        return {"box": [round(v, 1) for v in self.box], "type": self.type, "det_score": round(self.det_score, 4),
                "tumor_prob": round(self.tumor_prob, 4), "type_prob": round(self.type_prob, 4),
                "score": round(self.score, 4), "kept": self.kept}


class Cascade:
    def __init__(self, detector, classifier, imgsz: int, conf: float, device: str, cls_threshold: float | None = None,
                 tta: bool = False):
        """``classifier``: a head from ``cascade.backends.load_classifier``; its ``contract`` is the checkpoint's.
        ``tta``: the detector's test-time augmentation (``detect.model.predict_boxes``)."""
        self.detector, self.head, self.tta = detector, classifier, tta
        self.checkpoint = classifier.contract
        self.classifier = classifier.module  # the torch network, or None for an exported classifier
        self.imgsz, self.conf, self.device = imgsz, conf, device
        self.rule = crop_rule_of(self.checkpoint)
        # what each head was trained on, so each gets its input the same way (recorded in every output)
        self.standardise = {"detector": trained_standardised(detector), "classifier": self.rule.standardise}
        self.threshold = float(self.checkpoint["thresholds"]["default"] if cls_threshold is None else cls_threshold)
        self.types = list(self.checkpoint["classes"][1:])
        self.fusion = self.checkpoint.get("fusion")  # None: rank by the geometric mean of both scores
        self.torch_device = torch_device(device)
        scale = torch.tensor([255.0], device=self.torch_device)
        self._mean = torch.tensor(self.checkpoint["mean"], device=self.torch_device).view(1, 3, 1, 1) * scale
        self._std = torch.tensor(self.checkpoint["std"], device=self.torch_device).view(1, 3, 1, 1) * scale

    @classmethod
    def load(cls, det_weights: str | Path, cls_weights: str | Path, conf: float = 0.25, imgsz: int | None = None,
             device: str = "cpu", cls_threshold: float | None = None, tta: bool | None = None) -> "Cascade":
        """Both heads from ``.pt``, ``.onnx`` or OpenVINO weights (each head in any format); ``WeightsError``
        or ``mri.cli.DeviceError`` in one line. ``tta=None``: test-time augmentation where the detector
        supports it (PyTorch weights), as the held-out A/B chose (docs/generalisation.md, "Test-time augmentation")."""
        from cascade.backends import (ExportedWeightsError, detector_image_size, keep_detector_threads, load_classifier,
                                      load_detector, weights_format)

        check_device(device)  # DeviceError: one line naming the --device this machine lacks
        pytorch_detector = weights_format(det_weights) == "pytorch"
        if tta is None:
            tta = pytorch_detector
        if tta and not pytorch_detector:
            raise WeightsError(f"{det_weights}: test-time augmentation (--tta) needs the PyTorch detector (.pt); "
                               "exported ones run single-scale only")

        try:
            detector = load_detector(det_weights)
            size = imgsz or detector_image_size(detector, det_weights)
        except (FileNotFoundError, ValueError) as error:
            raise WeightsError(f"{error} (the shipped weights are weights/detector.pt; see weights/README.md)") from None
        try:
            classifier = load_classifier(cls_weights, torch_device(device))
        except (CheckpointError, ExportedWeightsError) as error:
            raise WeightsError(f"{error} (the shipped weights are weights/classifier.pt; see weights/README.md)") from None
        keep_detector_threads(detector, det_weights)
        return cls(detector, classifier, size, conf, device, cls_threshold, tta)

    def detect(self, images: list[np.ndarray], conf: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Detector boxes (pixels) and scores for each image, highest score first."""
        from detect.model import predict_boxes

        return predict_boxes(self.detector, images, self.imgsz, self.conf if conf is None else conf, self.device,
                             augment=self.tta)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Class probabilities of uint8 crops (N, size, size, 3) as ``crop_for_classifier`` cuts them."""
        if len(crops) == 0:
            return np.zeros((0, len(self.checkpoint["classes"])), np.float32)
        return self.head(to_batch(crops, self.checkpoint["mean"], self.checkpoint["std"]))

    def classify_boxes(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> np.ndarray:
        """Class probabilities of every box of every image, in order, all crops in one classifier batch.
        ``images``: the slices as crops are cut from them (``slice_for_crops``).

        On a GPU the crops are cut and resized together on the device (``crops_for_boxes_batched``); on the
        CPU OpenCV's per-box crop is faster, and both give the same crops within rounding.
        """
        if sum(len(b) for b in boxes) == 0:
            return np.zeros((0, len(self.checkpoint["classes"])), np.float32)
        if self.torch_device.type == "cpu":
            return self.classify(np.concatenate([crops_for_boxes(image, b, self.rule) for image, b in zip(images, boxes)]))
        crops = crops_for_boxes_batched(images, boxes, self.rule, self.torch_device)
        batch = (crops.flip(1) - self._mean) / self._std  # the images are BGR; the classifier takes RGB
        return self.head(batch)

    def run(self, images: list[np.ndarray], keep_crops: bool = False, cam: bool = False,
            conf: float | None = None, top_k: int | None = None, always_above: float = 1.0) -> list[list[Detection]]:
        """Detections for each image, every detector box with the classifier's verdict.

        ``top_k``: classify only the k highest-scoring boxes of each image, and any other box whose detector
        score reaches ``always_above``; the rest come back with ``classified=False``, NaN probabilities and
        ``kept=False`` (evaluation at a low confidence uses it).
        """
        proposals = self.detect(images, conf)
        if top_k is None:
            chosen = [boxes for boxes, _ in proposals]
        else:  # detect() sorts by score, so the chosen boxes are a prefix
            chosen = [boxes[: max(top_k, int((scores >= always_above).sum()))] for boxes, scores in proposals]
        crop_sources = [slice_for_crops(image, self.rule) for image in images]
        probabilities = self.classify_boxes(crop_sources, chosen)
        want_crops = keep_crops or cam
        results, offset = [], 0
        for image, picked, (boxes, scores) in zip(crop_sources, chosen, proposals):
            image_crops = crops_for_boxes(image, picked, self.rule) if want_crops else None
            detections = []
            for i, (box, score) in enumerate(zip(boxes, scores)):
                if i >= len(picked):
                    detections.append(Detection(box=box.tolist(), det_score=float(score), tumor_prob=float("nan"),
                                                type=self.types[0], type_prob=float("nan"), kept=False, classified=False))
                    continue
                p = probabilities[offset + i]
                tumor_prob = float(1.0 - p[0])
                type_index = int(p[1:].argmax())
                detections.append(Detection(
                    box=box.tolist(), det_score=float(score), tumor_prob=tumor_prob, type=self.types[type_index],
                    type_prob=float(p[1 + type_index] / max(tumor_prob, 1e-9)), kept=tumor_prob >= self.threshold,
                    crop=image_crops[i] if keep_crops else None,
                    score=float(fused_score([score], [tumor_prob], self.fusion)[0]),
                ))
            offset += len(picked)
            if cam:
                self._add_cams(image_crops, detections)
            results.append(detections)
        return results

    def threads(self) -> dict:
        """Threads each part uses now: the detector's runtime, torch (crops, PyTorch heads), the classifier's."""
        from cascade.backends import detector_threads

        return {"detector": detector_threads(self.detector), "torch": torch.get_num_threads(),
                "classifier": self.head.threads(), "classifier_format": self.head.format}

    def _add_cams(self, crops: np.ndarray, detections: list[Detection]) -> None:
        from cascade.gradcam import grad_cam

        if self.classifier is None:
            if not getattr(self, "_cam_warned", False):
                print("warning: Grad-CAM needs the PyTorch classifier (.pt); no heat maps with exported weights")
                self._cam_warned = True
            return
        kept = [i for i, d in enumerate(detections) if d.kept]
        if not kept:
            return
        classes = [1 + self.types.index(detections[i].type) for i in kept]
        batch = to_batch(crops[kept], self.checkpoint["mean"], self.checkpoint["std"]).to(self.torch_device)
        maps = grad_cam(self.classifier, batch, classes)
        for i, heat in zip(kept, maps):
            detections[i].cam = _cam_for_box(heat, self.rule, detections[i].box)


def _cam_for_box(heat: np.ndarray, rule, box) -> np.ndarray:
    """The part of a crop-sized heatmap that lies inside the box (the crop adds context around it)."""
    from classify.crops import crop_square

    cx, cy, side = crop_square(box, rule)
    x1, y1, x2, y2 = box
    size = heat.shape[0]
    left = int(round((x1 - (cx - side / 2)) / side * size))
    top = int(round((y1 - (cy - side / 2)) / side * size))
    right = max(left + 1, int(round((x2 - (cx - side / 2)) / side * size)))
    bottom = max(top + 1, int(round((y2 - (cy - side / 2)) / side * size)))
    return heat[max(top, 0) : bottom, max(left, 0) : right]


def prefetched(chunks: Iterable, load: Callable, depth: int = 2) -> Iterator[tuple]:
    """``(chunk, load(chunk))`` for each chunk, loading the next ones in a thread while the caller computes.

    Scan decoding (OpenCV, pydicom) mostly releases the GIL, so it overlaps with the models' work. An
    exception from ``load`` reaches the caller at that chunk.
    """
    queue: Queue = Queue(maxsize=depth)
    done = object()

    def produce():
        for chunk in chunks:
            try:
                queue.put((chunk, load(chunk), None))
            except Exception as error:  # handed to the consumer, which raises it in its own thread
                queue.put((chunk, None, error))
                return
        queue.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := queue.get()) is not done:
        chunk, loaded, error = item
        if error is not None:
            raise error
        yield chunk, loaded
