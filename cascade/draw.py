"""Boxed images people can read: a colour per tumor type, the type and both scores on each box,
rejected boxes dashed in gray, and an optional Grad-CAM overlay inside kept boxes."""

from __future__ import annotations

import cv2
import numpy as np

TYPE_COLOURS = {  # BGR
    "glioma": (40, 40, 230),
    "meningioma": (60, 200, 60),
    "pituitary": (230, 160, 30),
    "tumor": (0, 200, 230),
}
REJECTED_COLOUR = (150, 150, 150)


def _thickness(image: np.ndarray) -> int:
    return max(1, round(min(image.shape[:2]) / 250))


def dashed_rectangle(image: np.ndarray, p1, p2, colour, thickness: int, dash: int = 8) -> None:
    x1, y1 = p1
    x2, y2 = p2
    for start, end in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = int(np.hypot(end[0] - start[0], end[1] - start[1]))
        for offset in range(0, max(length, 1), 2 * dash):
            a = offset / max(length, 1)
            b = min(offset + dash, length) / max(length, 1)
            pa = (int(start[0] + (end[0] - start[0]) * a), int(start[1] + (end[1] - start[1]) * a))
            pb = (int(start[0] + (end[0] - start[0]) * b), int(start[1] + (end[1] - start[1]) * b))
            cv2.line(image, pa, pb, colour, thickness, cv2.LINE_AA)


def overlay_heatmap(image: np.ndarray, box, heatmap: np.ndarray, alpha: float = 0.45) -> None:
    """Blend a [0, 1] heatmap (any size) into the box region, in place."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = max(x1, 0), max(y1, 0)
    x2, y2 = min(x2, image.shape[1]), min(y2, image.shape[0])
    if x2 <= x1 or y2 <= y1:
        return
    resized = cv2.resize(heatmap.astype(np.float32), (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap(np.clip(resized * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    region = image[y1:y2, x1:x2]
    weight = (alpha * resized)[:, :, None]
    image[y1:y2, x1:x2] = (region * (1 - weight) + coloured * weight).astype(np.uint8)


def draw_detections(image: np.ndarray, detections: list[dict], show_rejected: bool = False) -> np.ndarray:
    """A copy of ``image`` with each kept detection (and rejected ones when asked) drawn and labelled."""
    canvas = image.copy()
    thickness = _thickness(canvas)
    font_scale = max(0.35, min(canvas.shape[:2]) / 900)
    for det in sorted(detections, key=lambda d: d["kept"]):  # kept boxes on top
        if not det["kept"] and not show_rejected:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in det["box"])
        if det.get("cam") is not None and det["kept"]:
            overlay_heatmap(canvas, det["box"], det["cam"])
        colour = TYPE_COLOURS.get(det["type"], TYPE_COLOURS["tumor"]) if det["kept"] else REJECTED_COLOUR
        if det["kept"]:
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        else:
            dashed_rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        label = f"{det['type'] if det['kept'] else 'rejected'} det {det['det_score']:.2f} cls {det['tumor_prob']:.2f}"
        (width, height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y1 - height - baseline - 2 if y1 - height - baseline - 2 >= 0 else y2 + 2
        cv2.rectangle(canvas, (x1, top), (x1 + width + 2, top + height + baseline + 2), colour, -1)
        cv2.putText(canvas, label, (x1 + 1, top + height + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
