"""Detection metrics on one set of predictions: COCO mAP (pycocotools), ultralytics' mAP, FROC, P/R.

Every function takes a list of ``ImageResult`` (ground truth and predictions of one image, boxes in
pixels) and returns plain floats, so the CLIs, the tests and the reports read the same numbers.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

FROC_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # false positives per image, as in medical detection


@dataclass
class ImageResult:
    key: str
    dataset: str
    width: int
    height: int
    gt_boxes: np.ndarray  # (M, 4) x1 y1 x2 y2 pixels
    gt_classes: list[str]
    pred_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # (N, 4) pixels
    pred_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (N,)
    pred_classes: list[str] = field(default_factory=list)
    unit: str = ""  # what a bootstrap draws as one (a patient or duplicate group); "" = this image alone


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas of (M, 4) and (N, 4) xyxy boxes."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (M, 4) and (N, 4) xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    inter = box_intersection(a, b)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def match_greedy(result: ImageResult, iou_threshold: float = 0.5, typed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Match predictions (highest score first) to unclaimed ground truth at ``iou_threshold``.

    Returns ``is_tp`` for each prediction (in the input order) and, for each ground-truth box, the index of
    the prediction that claimed it (-1 when missed).
    """
    order = np.argsort(-result.pred_scores, kind="stable")
    iou = box_iou(result.pred_boxes, result.gt_boxes)
    if typed:
        same = np.array([[p == g for g in result.gt_classes] for p in result.pred_classes], bool).reshape(iou.shape)
        iou = iou * same
    is_tp = np.zeros(len(order), bool)
    claimed_by = np.full(len(result.gt_boxes), -1)
    for index in order:
        if iou.shape[1] == 0:
            break
        candidates = np.where(claimed_by < 0, iou[index], 0.0)
        best = int(candidates.argmax())
        if candidates[best] >= iou_threshold:
            is_tp[index] = True
            claimed_by[best] = index
    return is_tp, claimed_by


def coco_map(results: list[ImageResult], typed: bool = False, classes: list[str] | None = None) -> dict:
    """COCO mAP50 and mAP50-95 computed by pycocotools; class-agnostic unless ``typed``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = list(classes or sorted({c for r in results for c in [*r.gt_classes, *r.pred_classes]})) if typed else ["tumor"]
    category = (lambda name: names.index(name) + 1 if name in names else None) if typed else (lambda name: 1)  # noqa: E731
    images, annotations, detections = [], [], []
    for image_id, result in enumerate(results, start=1):
        images.append({"id": image_id, "width": result.width, "height": result.height})
        for box, cls in zip(result.gt_boxes.tolist(), result.gt_classes):
            if category(cls) is None:
                continue
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category(cls),
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for box, score, cls in zip(result.pred_boxes.tolist(), result.pred_scores.tolist(), result.pred_classes or ["tumor"] * len(result.pred_scores)):
            if category(cls) is None:
                continue
            x1, y1, x2, y2 = box
            detections.append({"image_id": image_id, "category_id": category(cls),
                               "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    if not annotations or not detections:
        return {"map50": 0.0, "map50_95": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = {"images": images, "annotations": annotations,
                                "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"map50": float(max(evaluation.stats[1], 0.0)), "map50_95": float(max(evaluation.stats[0], 0.0))}


def ap50_from_hits(scores: np.ndarray, hits: np.ndarray, n_gt: float, weights: np.ndarray | None = None) -> float:
    """COCO's AP at IoU 0.5 from scored predictions and whether each is a true positive (101-point interpolated
    precision, as pycocotools computes it for boxes of positive area, at most 100 per image); ``weights`` counts
    each prediction that many times (an image drawn twice by a bootstrap counts twice)."""
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    hits = np.asarray(hits, bool)[order]
    return _ap50_ranked(hits, n_gt, None if weights is None else np.asarray(weights, float)[order])


def _ap50_ranked(hits: np.ndarray, n_gt: float, weights: np.ndarray | None = None) -> float:
    if n_gt <= 0 or len(hits) == 0:
        return 0.0
    weights = np.ones(len(hits)) if weights is None else weights
    tp = np.cumsum(hits * weights)
    fp = np.cumsum(~hits * weights)
    recall = tp / n_gt
    precision = np.maximum.accumulate((tp / np.maximum(tp + fp, np.finfo(float).eps))[::-1])[::-1]
    index = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    return float(np.where(index < len(precision), precision[np.minimum(index, len(precision) - 1)], 0.0).mean())


def _bootstrap_map50(systems: list[list[ImageResult]], resamples: int, seed: int):
    """Each system's mAP50 on each of ``resamples`` draws with replacement of the resampling units (patients or
    duplicate groups where the results say, else images): the same draw for every system, which must list the
    same images in the same order. Slices of one patient are not independent, so drawing them one by one would
    understate the spread. A draw without a tumor (mAP undefined) is drawn again."""
    index_of_unit = {}
    unit_of_image = np.array([index_of_unit.setdefault(r.unit or r.key, len(index_of_unit)) for r in systems[0]])
    n_units = len(index_of_unit)
    n_gt = np.array([len(r.gt_boxes) for r in systems[0]], float)
    ranked = []
    for results in systems:
        scores = np.concatenate([r.pred_scores for r in results])
        hits = np.concatenate([match_greedy(r)[0] for r in results])
        image_of = np.concatenate([np.full(len(r.pred_scores), i) for i, r in enumerate(results)])
        order = np.argsort(-scores, kind="mergesort")  # once: a draw changes weights, never the ranking
        ranked.append((hits[order], image_of[order]))
    rng = np.random.default_rng(seed)
    drawn = 0
    while drawn < resamples:
        image_counts = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)[unit_of_image]
        total = float(image_counts @ n_gt)
        if total == 0:
            continue
        drawn += 1
        yield [_ap50_ranked(hits, total, image_counts[image_of].astype(float)) for hits, image_of in ranked]


def _interval95(values) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def map50_interval(results: list[ImageResult], resamples: int = 1000, seed: int = 0) -> list[float] | None:
    """A 95% bootstrap interval (percentile) for class-agnostic COCO mAP50, drawing patients or duplicate groups
    (``ImageResult.unit``) with replacement. On a test split of ~100 slices it is several points wide: two
    detectors whose mAP50 differ by less are not told apart by that split (``paired_map50_difference`` does it)."""
    if not any(len(r.gt_boxes) for r in results):
        return None
    return _interval95([values[0] for values in _bootstrap_map50([results], resamples, seed)])


def paired_map50_difference(results: list[ImageResult], baseline: list[ImageResult], resamples: int = 1000,
                            seed: int = 0) -> dict | None:
    """mAP50 of ``results`` minus that of ``baseline`` on the same images, with a paired 95% bootstrap interval
    (each draw scores both systems on the same patients, so what the images share cancels out). An interval
    that excludes 0 says the difference is more than the choice of test images."""
    if [r.key for r in results] != [r.key for r in baseline]:
        raise ValueError("the two systems were not scored on the same images")
    if not any(len(r.gt_boxes) for r in results):
        return None
    point = [coco_map(system)["map50"] for system in (results, baseline)]
    differences = [ours - theirs for ours, theirs in _bootstrap_map50([results, baseline], resamples, seed)]
    return {"difference": point[0] - point[1], "ci95": _interval95(differences)}


def f1_score(tp: int, fp: int, fn: int, empty: float = 0.0) -> float:
    """F1 from counts (the harmonic mean of precision and recall); ``empty`` when there is nothing to count."""
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else empty


def overall_and_per_dataset(compute, items: list, datasets: list[str]) -> dict:
    """``{"overall": compute(items), "per_dataset": {name: compute(its items)}}``, datasets sorted by name."""
    groups = {name: [item for item, d in zip(items, datasets) if d == name] for name in sorted(set(datasets))}
    return {"overall": compute(items), "per_dataset": {name: compute(group) for name, group in groups.items()}}


# A slice's native longer side: 256 and 512 are the usual MRI matrices; under 256 are mostly downscaled exports.
RESOLUTION_BINS = (("under 256 px", 0, 256), ("256-511 px", 256, 512), ("512 px and up", 512, None))


def resolution_bin(result: ImageResult) -> str:
    side = max(result.width, result.height)
    return next(label for label, low, high in RESOLUTION_BINS if side >= low and (high is None or side < high))


def by_resolution(compute, results: list[ImageResult]) -> dict:
    """``{bin: compute(indices of its results)}`` for each native-resolution bin that holds any result: a
    detector that does well on one scanner's matrix size need not on another's."""
    bins = [resolution_bin(r) for r in results]
    return {label: compute([i for i, b in enumerate(bins) if b == label]) for label, _, _ in RESOLUTION_BINS
            if label in bins}


def match_at_iou_thresholds(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Which predictions are true positives at each IoU threshold: (predictions, thresholds) booleans.

    ``iou`` is (ground truth, predictions). At each threshold every pair at or above it is a candidate,
    the highest IoU first, each prediction and each ground-truth box used once (ultralytics' validator
    matching, so its mAP can be computed from our results).
    """
    correct = np.zeros((iou.shape[1], len(thresholds)), bool)
    for i, threshold in enumerate(thresholds):
        matches = np.array(np.nonzero(iou >= threshold)).T
        if len(matches) > 1:
            matches = matches[iou[matches[:, 0], matches[:, 1]].argsort()[::-1]]
            matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
            matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        if len(matches):
            correct[matches[:, 1].astype(int), i] = True
    return correct


def ultralytics_map(results: list[ImageResult]) -> dict:
    """Class-agnostic mAP50 and mAP50-95 from ultralytics' matching rule and its ``ap_per_class``."""
    from ultralytics.utils.metrics import ap_per_class

    thresholds = np.linspace(0.5, 0.95, 10)
    tps, confs, targets = [], [], []
    for result in results:
        order = np.argsort(-result.pred_scores, kind="stable")
        targets += [0] * len(result.gt_boxes)
        confs.append(result.pred_scores[order])
        if len(order) == 0:
            continue
        if len(result.gt_boxes) == 0:
            tps.append(np.zeros((len(order), 10), bool))
            continue
        tps.append(match_at_iou_thresholds(box_iou(result.gt_boxes, result.pred_boxes[order]), thresholds))
    if not tps or not targets:
        return {"map50": 0.0, "map50_95": 0.0}
    tp = np.concatenate(tps)
    conf = np.concatenate(confs)
    output = ap_per_class(tp, conf, np.zeros(len(conf)), np.asarray(targets))
    ap = output[5]  # (classes, 10) average precision at IoU 0.5:0.95
    return {"map50": float(ap[:, 0].mean()), "map50_95": float(ap.mean())}


def ranked_hits(results: list[ImageResult], typed: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """All predictions' scores, highest first, whether each is a true positive (IoU >= 0.5, greedy), and the
    number of ground-truth boxes: what PR and FROC curves are drawn from."""
    scores, hits = [], []
    for result in results:
        is_tp, _ = match_greedy(result, typed=typed)
        scores.append(result.pred_scores)
        hits.append(is_tp)
    scores = np.concatenate(scores) if scores else np.zeros(0)
    hits = np.concatenate(hits) if hits else np.zeros(0, bool)
    order = np.argsort(-scores, kind="stable")
    return scores[order], hits[order], sum(len(r.gt_boxes) for r in results)


def froc(results: list[ImageResult], rates=FROC_RATES) -> dict:
    """Sensitivity (IoU >= 0.5) at each false-positive-per-image rate, plus the curve for plotting."""
    scores, hits, n_gt = ranked_hits(results)
    n_images = max(len(results), 1)
    sensitivity = np.cumsum(hits) / max(n_gt, 1)
    fp_rate = np.cumsum(~hits) / n_images
    at = {}
    for rate in rates:
        allowed = fp_rate <= rate
        at[_rate_key(rate)] = float(sensitivity[allowed].max()) if allowed.any() else 0.0
    return {"sens_at_fp": at, "curve": {"fp_per_image": fp_rate.tolist(), "sensitivity": sensitivity.tolist()}}


def fp_per_image_at_sensitivity(results: list[ImageResult], target: float = 0.9) -> float | None:
    """False positives per image at the first score threshold that reaches ``target`` sensitivity (None: never)."""
    scores, hits, n_gt = ranked_hits(results)
    if n_gt == 0:
        return None
    sensitivity = np.cumsum(hits) / n_gt
    reached = np.nonzero(sensitivity >= target)[0]
    if not len(reached):
        return None
    return float(np.cumsum(~hits)[reached[0]] / max(len(results), 1))


def precision_recall_at(results: list[ImageResult], conf: float) -> dict:
    scores, hits, n_gt = ranked_hits(results)
    kept = scores >= conf
    tp = int(hits[kept].sum())
    predicted = int(kept.sum())
    precision = tp / predicted if predicted else 0.0
    recall = tp / n_gt if n_gt else 0.0
    return {"precision": precision, "recall": recall, "f1": f1_score(tp, predicted - tp, n_gt - tp), "conf": conf}


def localisation_by_type(results: list[ImageResult]) -> dict[str, dict]:
    """How each ground-truth type is localised by the boxes a system outputs, whatever their predicted type.

    Per type: ``found`` (share matched at IoU >= 0.5, greedy by score), ``touched`` (share that any box
    overlaps at all; the rest were missed outright, not merely boxed badly), ``area_ratio`` (median area
    of the most-overlapping box over the ground truth's, for touched boxes: above 1, boxes are too loose),
    and ``size`` / ``size_missed``: the median side of the true boxes (all / those not found), as a share of
    the slice's side (square root of the area shares), to tell small-tumor misses from the rest.
    """
    tally: dict[str, dict[str, list]] = {}
    for result in results:
        _, claimed_by = match_greedy(result)
        iou = box_iou(result.gt_boxes, result.pred_boxes)
        pred_area = np.prod(result.pred_boxes[:, 2:] - result.pred_boxes[:, :2], axis=1) if len(result.pred_boxes) else None
        for index, (box, kind) in enumerate(zip(result.gt_boxes, result.gt_classes)):
            entry = tally.setdefault(kind, {"found": [], "touched": [], "area_ratio": [], "size": []})
            gt_area = float(np.prod(box[2:] - box[:2]))
            entry["found"].append(claimed_by[index] >= 0)
            entry["size"].append(float(np.sqrt(gt_area / (result.width * result.height))))
            touched = iou.shape[1] > 0 and iou[index].max() > 0
            entry["touched"].append(touched)
            if touched:
                entry["area_ratio"].append(float(pred_area[iou[index].argmax()]) / max(gt_area, 1e-9))
    return {kind: {"n_boxes": len(entry["found"]), "found": float(np.mean(entry["found"])),
                   "touched": float(np.mean(entry["touched"])), "area_ratio": _median(entry["area_ratio"]),
                   "size": _median(entry["size"]),
                   "size_missed": _median([s for s, f in zip(entry["size"], entry["found"]) if not f])}
            for kind, entry in sorted(tally.items())}


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _rate_key(rate: float) -> str:
    return f"{rate:g}"


def detection_metrics(results: list[ImageResult], conf: float) -> dict:
    """The detector figures ``detect.val`` reports, for one set of images."""
    curve = froc(results)
    return {
        "n_images": len(results),
        "n_boxes": int(sum(len(r.gt_boxes) for r in results)),
        "coco": coco_map(results),
        "map50_ci95": map50_interval(results),
        "ultralytics": ultralytics_map(results),
        **precision_recall_at(results, conf),
        "sens_at_fp": curve["sens_at_fp"],
        "fp_per_image_at_sens90": fp_per_image_at_sensitivity(results, 0.9),
    }
