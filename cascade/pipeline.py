"""The two-stage cascade: the detector proposes boxes, the classifier confirms each crop.

``Cascade.load`` reads both models once; ``Cascade.run(images)`` handles a batch of slices and batches all
their crops through the classifier in one go. Everything inference needs about the classifier (crop rule,
input size, normalisation, classes, threshold) comes from its checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from classify.checkpoint import CheckpointError, crop_rule_of, load_checkpoint, model_from_checkpoint
from classify.crops import crops_for_boxes
from classify.presets import to_batch


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

    @property
    def score(self) -> float:
        """Ranking score of a cascade box: the geometric mean of detector and classifier confidence."""
        return float(np.sqrt(self.det_score * self.tumor_prob))

    def as_dict(self) -> dict:
        return {"box": [round(v, 1) for v in self.box], "type": self.type, "det_score": round(self.det_score, 4),
                "tumor_prob": round(self.tumor_prob, 4), "type_prob": round(self.type_prob, 4),
                "score": round(self.score, 4), "kept": self.kept}


class Cascade:
    def __init__(self, detector, classifier, checkpoint: dict, imgsz: int, conf: float, device: str,
                 cls_threshold: float | None = None):
        self.detector, self.classifier, self.checkpoint = detector, classifier, checkpoint
        self.imgsz, self.conf, self.device = imgsz, conf, device
        self.rule = crop_rule_of(checkpoint)
        self.threshold = float(checkpoint["thresholds"]["default"] if cls_threshold is None else cls_threshold)
        self.types = list(checkpoint["classes"][1:])

    @classmethod
    def load(cls, det_weights: str | Path, cls_weights: str | Path, conf: float = 0.25, imgsz: int | None = None,
             device: str = "cpu", cls_threshold: float | None = None) -> "Cascade":
        from detect.val import load_detector, trained_image_size
        from mri.offline import restore_torch_threads

        try:
            detector = load_detector(det_weights)
        except (FileNotFoundError, ValueError) as error:
            raise WeightsError(f"{error} (the shipped weights are weights/detector.pt; see weights/README.md)") from None
        try:
            checkpoint = load_checkpoint(cls_weights)
        except CheckpointError as error:
            raise WeightsError(f"{error} (the shipped weights are weights/classifier.pt; see weights/README.md)") from None
        classifier = model_from_checkpoint(checkpoint, _torch_device(device))
        restore_torch_threads()
        return cls(detector, classifier, checkpoint, imgsz or trained_image_size(detector), conf, device, cls_threshold)

    def detect(self, images: list[np.ndarray], conf: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Detector boxes (pixels) and scores for each image."""
        outputs = self.detector.predict(images, imgsz=self.imgsz, conf=self.conf if conf is None else conf,
                                        device=self.device, verbose=False, max_det=100)
        return [(o.boxes.xyxy.cpu().numpy().astype(np.float32), o.boxes.conf.cpu().numpy().astype(np.float32)) for o in outputs]

    @torch.no_grad()
    def classify(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, len(self.checkpoint["classes"])), np.float32)
        batch = to_batch(crops, self.checkpoint["mean"], self.checkpoint["std"]).to(_torch_device(self.device))
        return self.classifier(batch).softmax(1).cpu().numpy()

    def run(self, images: list[np.ndarray], keep_crops: bool = False, cam: bool = False,
            conf: float | None = None) -> list[list[Detection]]:
        """Detections for each image, every detector box with the classifier's verdict."""
        proposals = self.detect(images, conf)
        crops = [crops_for_boxes(image, boxes, self.rule) for image, (boxes, _) in zip(images, proposals)]
        probabilities = self.classify(np.concatenate(crops)) if crops else np.zeros((0, 1))
        results, offset = [], 0
        for image_crops, (boxes, scores) in zip(crops, proposals):
            detections = []
            for i, (box, score) in enumerate(zip(boxes, scores)):
                p = probabilities[offset + i]
                tumor_prob = float(1.0 - p[0])
                type_index = int(p[1:].argmax())
                detections.append(Detection(
                    box=box.tolist(), det_score=float(score), tumor_prob=tumor_prob, type=self.types[type_index],
                    type_prob=float(p[1 + type_index] / max(tumor_prob, 1e-9)), kept=tumor_prob >= self.threshold,
                    crop=image_crops[i] if keep_crops else None,
                ))
            offset += len(boxes)
            if cam:
                self._add_cams(image_crops, detections)
            results.append(detections)
        return results

    def _add_cams(self, crops: np.ndarray, detections: list[Detection]) -> None:
        from cascade.gradcam import grad_cam

        kept = [i for i, d in enumerate(detections) if d.kept]
        if not kept:
            return
        classes = [1 + self.types.index(detections[i].type) for i in kept]
        batch = to_batch(crops[kept], self.checkpoint["mean"], self.checkpoint["std"]).to(_torch_device(self.device))
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


def _torch_device(device: str) -> torch.device:
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(f"cuda:{device}" if str(device).isdigit() else device)
