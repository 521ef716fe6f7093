"""The one way to cut a classifier crop from a scan and a box: training, inference and tests all call it.

A crop is the square around the box's centre whose side is the box's longer side times
``1 + 2 * context`` (never less than ``min_side`` pixels), taken from the slice with black outside the
image, and resized to ``size`` pixels. The rule travels inside every classifier checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropRule:
    size: int = 128  # output side in pixels
    context: float = 0.25  # margin on each side, as a fraction of the box's longer side
    min_side: int = 24  # smallest square taken from the scan, in scan pixels

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CropRule":
        return cls(**{k: values[k] for k in ("size", "context", "min_side") if k in values})


def crop_square(box, rule: CropRule) -> tuple[float, float, float]:
    """Centre x, centre y and side (pixels) of the square a crop takes for ``box`` (x1, y1, x2, y2 pixels)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + 2.0 * rule.context)
    return (x1 + x2) / 2.0, (y1 + y2) / 2.0, max(side, float(rule.min_side))


def crop_for_classifier(image: np.ndarray, box, rule: CropRule = CropRule()) -> np.ndarray:
    """A ``rule.size`` x ``rule.size`` crop of ``image`` (H x W x 3 uint8) around ``box`` in pixels."""
    cx, cy, side = crop_square(box, rule)
    side_px = max(1, int(round(side)))
    left, top = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    height, width = image.shape[:2]
    patch = np.zeros((side_px, side_px, 3), np.uint8)
    x1, y1 = max(left, 0), max(top, 0)
    x2, y2 = min(left + side_px, width), min(top + side_px, height)
    if x2 > x1 and y2 > y1:
        patch[y1 - top : y2 - top, x1 - left : x2 - left] = image[y1:y2, x1:x2]
    interpolation = cv2.INTER_AREA if side_px > rule.size else cv2.INTER_LINEAR
    return cv2.resize(patch, (rule.size, rule.size), interpolation=interpolation)


def crops_for_boxes(image: np.ndarray, boxes, rule: CropRule = CropRule()) -> np.ndarray:
    """Crops of every box of one image, stacked as (N, size, size, 3)."""
    if len(boxes) == 0:
        return np.zeros((0, rule.size, rule.size, 3), np.uint8)
    return np.stack([crop_for_classifier(image, box, rule) for box in boxes])
