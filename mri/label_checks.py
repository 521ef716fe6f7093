"""Checks on the labels themselves, independent of any model.

Nested boxes: a box that lies inside a larger box of the same slice. In the shared data this is how
``br35h`` mixes two conventions: some slices box the tumor core alone, some the whole lesion with its
oedema, and some carry both, one inside the other. A detector that draws one box per lesion rarely
matches both boxes of such a pair at IoU 0.5, so a test split rich in them is hard for any detector
(``docs/generalisation.md``, "Nested labels in `br35h`"). Elsewhere a small box inside a large one may be
a second lesion: the check finds candidates for a curator, it does not decide. The audit counts them per
split, ``tools/evaluate.py`` scores them apart from the other boxes, and the review app lists their slices.
"""

from __future__ import annotations

import numpy as np

from mri.metrics import box_intersection

NESTED_MIN_INSIDE = 0.9  # share of a box's area inside the larger box
NESTED_MAX_AREA_RATIO = 0.8  # above it the two boxes are one box drawn twice, not two conventions


def nested_boxes(boxes: np.ndarray, min_inside: float = NESTED_MIN_INSIDE,
                 max_area_ratio: float = NESTED_MAX_AREA_RATIO) -> np.ndarray:
    """For each x1 y1 x2 y2 box, whether ``min_inside`` of its area lies inside a box of the set at least
    1 / ``max_area_ratio`` times as large.

    Two (nearly) identical boxes are not nested in each other: that is a duplicate label, not a second convention.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) < 2:
        return np.zeros(len(boxes), bool)
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    overlap = box_intersection(boxes, boxes)  # (inner, outer)
    inside = (overlap >= min_inside * area[:, None]) & (area[:, None] <= max_area_ratio * area[None, :]) \
        & (area[:, None] > 0)
    return inside.any(axis=1)
