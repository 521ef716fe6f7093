"""Detector alone vs the cascade on the same images: the figures ``tools/evaluate.py`` reports."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mri.label_checks import nested_boxes
from mri.metrics import (ImageResult, by_resolution, coco_map, f1_score, fp_per_image_at_sensitivity, froc,
                         localisation_by_type, map50_interval, match_greedy, overall_and_per_dataset,
                         paired_map50_difference)

EVAL_CONF = 0.005  # low, so the curves (mAP, FROC) see nearly every box

SENS_RATES = (0.5, 1.0, 2.0)


def type_accuracy(results: list[ImageResult], types: list[str]) -> float | None:
    """Share of typed ground-truth boxes, found at IoU >= 0.5, whose predicted type is right."""
    right = total = 0
    for result in results:
        if not result.pred_classes:
            continue
        _, claimed_by = match_greedy(result)
        for gt_class, index in zip(result.gt_classes, claimed_by):
            if index >= 0 and gt_class in types:
                total += 1
                right += result.pred_classes[index] == gt_class
    return right / total if total else None


def image_f1(truth: list[bool], predicted: list[bool]) -> float:
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    return f1_score(int((truth & predicted).sum()), int((~truth & predicted).sum()), int((truth & ~predicted).sum()),
                    empty=1.0)


def operating_point(results: list[ImageResult]) -> dict:
    """Sensitivity and false positives per image of the boxes a system actually outputs."""
    found = false = 0
    for result in results:
        is_tp, _ = match_greedy(result)
        found += int(is_tp.sum())
        false += int((~is_tp).sum())
    total = sum(len(r.gt_boxes) for r in results)
    return {"sensitivity": found / total if total else None, "fp_per_image": false / max(len(results), 1)}


INSIDE_ANOTHER, NOT_NESTED = "inside another box", "not nested"


def localisation_by_nesting(shown: list[ImageResult], every: list[ImageResult]) -> dict[str, dict]:
    """``localisation_by_type`` of the boxes a system shows, with the true boxes grouped instead as nested inside
    another true box of their slice or not (``mri.label_checks``), plus ``found_any``: the share matched at IoU 0.5
    by any of ``every`` box down to the evaluation confidence (what more boxes could still reach). ``shown`` and
    ``every`` hold the same images in the same order. Empty when no box is nested, so clean data report nothing
    extra."""
    groups = [[INSIDE_ANOTHER if n else NOT_NESTED for n in nested_boxes(r.gt_boxes)] for r in every]
    if not any(INSIDE_ANOTHER in group for group in groups):
        return {}

    def grouped(results):
        return [replace(r, gt_classes=group) for r, group in zip(results, groups)]

    reachable = localisation_by_type(grouped(every))
    return {kind: {**figures, "found_any": reachable[kind]["found"]}
            for kind, figures in localisation_by_type(grouped(shown)).items()}


def figures(results: list[ImageResult], operating: list[ImageResult], types: list[str], typed: bool) -> dict:
    """The contract of metrics.json for one system (detector or cascade) on one set of images.

    ``results``: every box with its ranking score (for mAP and the FROC figures); ``operating``: the boxes
    the system outputs at its shipped settings (for image F1, type accuracy and the operating point).
    """
    curve = froc(results, SENS_RATES)["sens_at_fp"]
    agnostic = coco_map(results)
    typed_map = None
    if typed:
        typed_images = [r for r in results if all(c in types for c in r.gt_classes)]
        has_typed_boxes = any(len(r.gt_classes) for r in typed_images)  # a source that only says "tumor" has none
        typed_map = coco_map(typed_images, typed=True, classes=types)["map50"] if has_typed_boxes else None
    return {
        "map50": agnostic["map50"],
        "map50_95": agnostic["map50_95"],
        "map50_ci95": map50_interval(results),
        "typed_map50": typed_map,
        "sens_at_fp": curve,
        "fp_per_image_at_sens90": fp_per_image_at_sensitivity(results, 0.9),
        "type_accuracy": type_accuracy(operating, types) if typed else None,
        "image_f1": image_f1([len(r.gt_boxes) > 0 for r in operating], [len(r.pred_boxes) > 0 for r in operating]),
        "operating_point": operating_point(operating),
        "by_type": localisation_by_type(operating),
        "by_nesting": localisation_by_nesting(operating, results),
        "n_images": len(results),
        "n_boxes": int(sum(len(r.gt_boxes) for r in results)),
    }


def compare(detector: list[ImageResult], cascade: list[ImageResult], detector_shown: list[ImageResult],
            cascade_shown: list[ImageResult], types: list[str], detector_typed: bool = False) -> dict:
    """Detector and cascade figures, overall, per source dataset and by native resolution (``*_shown``:
    operating-point boxes)."""
    def both(indices):
        pick = lambda items: [items[i] for i in indices]  # noqa: E731
        return {"detector": figures(pick(detector), pick(detector_shown), types, detector_typed),
                "cascade": figures(pick(cascade), pick(cascade_shown), types, True)}

    everything = both(range(len(detector)))
    per_dataset = {}
    for name in sorted({r.dataset for r in detector}):
        per_dataset[name] = both([i for i, r in enumerate(detector) if r.dataset == name])
    return {**everything, "per_dataset": per_dataset, "by_resolution": by_resolution(both, detector)}


def load_for_evaluation(det_weights, cls_weights, imgsz=None, device="cpu", threshold=None, tta=None, fusion=True):
    """The cascade as ``tools/evaluate.py`` scores it: every box down to ``EVAL_CONF`` for the curves, and the
    classifier's fitted fusion unless ``fusion`` is off (then the geometric mean ranks its boxes)."""
    from cascade.pipeline import Cascade

    cascade = Cascade.load(det_weights, cls_weights, EVAL_CONF, imgsz, device, threshold, tta)
    if not fusion:
        cascade.fusion = None
    return cascade


def scored_settings(cascade, det_weights, cls_weights, det_conf: float, top_k: int | None) -> dict:
    """What one scored system ran with, as metrics.json records it."""
    return {"det_weights": str(det_weights), "cls_weights": str(cls_weights), "imgsz": cascade.imgsz,
            "cls_threshold": cascade.threshold, "det_conf": det_conf, "top_k": top_k or None, "tta": cascade.tta,
            "standardise": cascade.standardise, "threads": cascade.threads()}


def versus_baseline(ours: tuple, baseline: tuple) -> dict:
    """mAP50 of detector and cascade minus the baseline's, on the same images, with paired 95% bootstrap
    intervals, overall and per source; ``ours`` and ``baseline`` are what ``run_both`` returned for each."""
    def on(indices):
        pick = lambda items: [items[i] for i in indices]  # noqa: E731
        return {"detector": paired_map50_difference(pick(ours[0]), pick(baseline[0])),
                "cascade": paired_map50_difference(pick(ours[1]), pick(baseline[1]))}

    return overall_and_per_dataset(on, list(range(len(ours[0]))), [r.dataset for r in ours[0]])


def run_both(cascade, records, batch: int, conf: float, top_k: int | None = None):
    """Detector-only and cascade ImageResults for every record, from one detector pass.

    Curves (mAP, FROC) rank every box: the detector by its score, the cascade by ``Detection.score`` (the
    classifier checkpoint's fitted fusion of both heads, see ``classify.fusion``). The operating point is what each outputs at its shipped
    settings: detector boxes at ``conf``; cascade boxes at ``conf`` that the classifier keeps.
    ``top_k``: the classifier scores only each slice's k best detector boxes (and every box at ``conf``, so
    the operating point is exact); a box it did not score ranks after all scored boxes in the cascade's
    curves. Scans are decoded in a thread meanwhile.
    """
    from tqdm import tqdm

    from cascade.pipeline import prefetched
    from detect.evaluate import gt_in_pixels
    from mri.scan_io import read_scan

    detector, cascaded, detector_shown, cascade_shown = [], [], [], []
    chunks = [records[start : start + batch] for start in range(0, len(records), batch)]
    decode = lambda chunk: [read_scan(r.path)[0].image for r in chunk]  # noqa: E731
    for chunk, images in tqdm(prefetched(chunks, decode), total=len(chunks), desc="evaluate", unit="batch"):
        results = cascade.run(images, conf=EVAL_CONF, top_k=top_k or None, always_above=conf)
        for record, image, detections in zip(chunk, images, results):
            height, width = image.shape[:2]
            common = dict(key=record.key, dataset=record.dataset, width=width, height=height,
                          gt_boxes=gt_in_pixels(record, width, height), gt_classes=list(record.classes),
                          unit=record.resampling_unit)
            shown = [d for d in detections if d.det_score >= conf]
            detector.append(as_result(common, detections, lambda d: d.det_score, typed=False))
            cascaded.append(as_result(common, detections, cascade_rank, typed=True))
            detector_shown.append(as_result(common, shown, lambda d: d.det_score, typed=False))
            cascade_shown.append(as_result(common, [d for d in shown if d.kept], lambda d: d.score, typed=True))
    return detector, cascaded, detector_shown, cascade_shown


def cascade_rank(detection) -> float:
    """The cascade's ranking score; 0 for a box the classifier did not score (``--top-k``)."""
    return detection.score if detection.classified else 0.0


def as_result(common: dict, detections, score, typed: bool) -> ImageResult:
    """An ``ImageResult`` of cascade ``Detection``s ranked by ``score(detection)``; types kept if ``typed``."""
    return ImageResult(**common, pred_boxes=np.array([d.box for d in detections], np.float32).reshape(-1, 4),
                       pred_scores=np.array([score(d) for d in detections], np.float32),
                       pred_classes=[d.type if typed else "tumor" for d in detections])
