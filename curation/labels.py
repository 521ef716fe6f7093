"""Boxes in one comparable form, for the registry's records and for fiftyone labels alike.

A box is ``(label, x1, y1, x2, y2)`` with coordinates normalised to [0, 1] and rounded to 4 decimals
(a tenth of a pixel on a 1,000 px scan), so a label that round-trips through fiftyone compares equal to
its source and any edit made in the App, however small, does not.
"""

from __future__ import annotations

import json

from mri.registry import LabeledImage

DECIMALS = 4


def record_boxes(record: LabeledImage) -> list[tuple]:
    """The registry's boxes of one image, sorted."""
    return sorted((c, *(round(float(v), DECIMALS) for v in b)) for b, c in zip(record.boxes, record.classes))


def label_boxes(detections) -> list[tuple]:
    """The boxes of a fiftyone ``Detections`` (or None), sorted."""
    boxes = []
    for d in (detections.detections if detections else []):
        x, y, w, h = d.bounding_box
        boxes.append((d.label, *(round(float(v), DECIMALS) for v in (x, y, x + w, y + h))))
    return sorted(boxes)


def fingerprint(boxes: list[tuple]) -> str:
    """A string that is equal for equal box lists (stored with each sample to notice edits)."""
    return json.dumps([list(b) for b in boxes])


def describe(boxes: list[tuple]) -> str:
    """Boxes as text for change lists: ``glioma 0.1000 0.2000 0.4000 0.6000; ...`` (x1 y1 x2 y2)."""
    return "; ".join(f"{b[0]} " + " ".join(f"{v:.{DECIMALS}f}" for v in b[1:]) for b in boxes)

