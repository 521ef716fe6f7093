"""Score predictions against the labels and save the views people open in the App to review mistakes.

Scoring is class-agnostic (a box that finds a tumor counts whatever type either side gives): each
evaluation runs on a view that maps every label to "tumor" (``map_labels``), which fiftyone applies
while matching only; the stored labels keep their types. Evaluation keys:

* ``eval_det`` / ``eval_cascade``: every detector box / every box the classifier keeps, for COCO mAP;
* ``eval_det_op`` / ``eval_cascade_op``: the same at the operating point (detector confidence at
  least ``dataset.info["operating_point"]["det_conf"]``), what the product shows;
* ``eval_cascade_all_op``: cascade boxes at the operating point, kept or not (to find rejected tumors).
"""

from __future__ import annotations

import numpy as np

from curation import quiet_fiftyone
from curation.app_config import configure_app
from curation.type_confusion import score_types
from mri.label_checks import nested_boxes
from mri.metrics import box_iou

SHIPPED_DET_CONF = 0.25  # the shipped detector setting: tools/infer.py's and tools/evaluate.py's default --conf
AGNOSTIC = "tumor"
HARDEST_SHARE, HARDEST_MIN, HARDEST_MAX = 0.10, 10, 200  # how many images hardest-samples holds

SAVED_VIEWS = {
    "at-operating-point": "whole images with what the product shows: detector boxes at the operating point (red), "
                          "the ones the classifier keeps (blue), ground truth (green)",
    "false-positives-by-confidence": "one patch per detector box at the operating point that matches no tumor, most "
                                     "confident first; best_iou: its overlap with the nearest tumor",
    "missed-tumors": "one patch per tumor no detector box at the operating point finds; best_det_iou: the overlap "
                     "of the nearest box at the operating point",
    "rejected-but-real": "one patch per tumor the detector found at the operating point but the classifier rejected",
    "kept-but-wrong": "one patch per box the cascade keeps at the operating point that matches no tumor, most "
                      "confident first",
    "type-confusions": "one patch per typed tumor the cascade finds at the operating point with the wrong type "
                       "(predicted_type on the ground-truth box)",
    "suspect-labels": "every ground-truth box, most suspect first: fiftyone brain's mistakenness_loc, high where a "
                      "confident detector box overlaps the label (IoU >= 0.5) but disagrees on its extent; a ranking, "
                      "not a verdict",
    "nested-labels": "whole slices with a ground-truth box inside another one (inside_other on the inner box): "
                     "probably two labelling conventions on one lesion, e.g. its core and the whole lesion, or a "
                     "second lesion; decide which the dataset keeps",
    "hardest-samples": "the images whose tumor verdict is least certain (brain hardness; the hardest 10%, 10 to 200), "
                       "boxes as at-operating-point",
    "duplicates-across-splits": "images the audit finds near-duplicated in another split of the sources "
                                "(dup_places lists where), boxes as at-operating-point",
}
LEGACY_FIELDS = ("gt_tumor", "cascade_tumor")  # relabelled copies older versions kept; map_labels replaced them
LEGACY_EVALUATIONS = ("eval_all",)


def operating_conf(dataset) -> float:
    """The detector confidence the views cut at: as recorded by ``predict``, else the shipped setting."""
    return float((dataset.info.get("operating_point") or {}).get("det_conf", SHIPPED_DET_CONF))


def _agnostic(view, fields: list[str]):
    """``view`` with every label of ``fields`` read as "tumor" (for matching only; nothing is written)."""
    for field in fields:
        labels = [label for label in view.distinct(f"{field}.detections.label") if label != AGNOSTIC]
        if labels:
            view = view.map_labels(field, {label: AGNOSTIC for label in labels})
    return view


def scored_boxes(dataset, conf: float) -> dict:
    """Evaluation key -> (prediction field, view holding the predictions it scores, compute mAP)."""
    from fiftyone import ViewField as F

    kept = F("kept") == True  # noqa: E712
    return {
        "eval_det": ("detector", dataset, True),
        "eval_cascade": ("cascade", dataset.filter_labels("cascade", kept, only_matches=False), True),
        "eval_det_op": ("detector", dataset.filter_labels("detector", F("confidence") >= conf, only_matches=False), False),
        "eval_cascade_op": ("cascade", dataset.filter_labels("cascade", kept & (F("det_score") >= conf),
                                                             only_matches=False), False),
        "eval_cascade_all_op": ("cascade", dataset.filter_labels("cascade", F("det_score") >= conf,
                                                                 only_matches=False), False),
    }


def evaluate(dataset) -> dict:
    """Score detector and cascade, mark type errors and overlaps, rank suspect labels, save the views.

    Returns mAP of both systems, tp/fp/fn counts at the operating point, and the type confusion counts.
    """
    import fiftyone.brain as fob

    conf = operating_conf(dataset)
    _drop_legacy(dataset)
    results = {}
    with quiet_fiftyone():
        for key, (field, view, with_map) in scored_boxes(dataset, conf).items():
            if key in dataset.list_evaluations():  # re-evaluating replaces earlier results
                dataset.delete_evaluation(key)
            results[key] = _agnostic(view, ["ground_truth", field]).evaluate_detections(
                field, gt_field="ground_truth", eval_key=key, compute_mAP=with_map, progress=False)
        add_best_ious(dataset, conf)
        add_nested_flags(dataset)
        untyped = dataset.info.get("untyped", AGNOSTIC)
        typed = dataset.info.get("classes") or [c for c in dataset.distinct("ground_truth.detections.label") if c != untyped]
        confusion = score_types(dataset, "eval_cascade_op", typed)
        for run in ("mistakenness", "hardness"):
            if run in dataset.list_brain_runs():
                dataset.delete_brain_run(run)
        fob.compute_mistakenness(_agnostic(dataset, ["ground_truth", "detector"]), "detector",
                                 label_field="ground_truth", progress=False)
        fob.compute_hardness(dataset, "tumor_verdict", progress=False)
    dataset.info["type_confusion"] = confusion
    dataset.save()
    save_views(dataset, conf)
    configure_app(dataset)
    return {"operating_conf": conf, "detector_map": float(results["eval_det"].mAP()),
            "cascade_map": float(results["eval_cascade"].mAP()), "detector_at_op": counts(dataset, "eval_det_op"),
            "cascade_at_op": counts(dataset, "eval_cascade_op"), "type_confusion": confusion}


def counts(view, key: str) -> dict:
    """True positives, false positives and false negatives of evaluation ``key``."""
    return {kind: int(sum(v or 0 for v in view.values(f"{key}_{kind}"))) for kind in ("tp", "fp", "fn")}


def _drop_legacy(dataset) -> None:
    for key in LEGACY_EVALUATIONS:
        if key in dataset.list_evaluations():
            dataset.delete_evaluation(key)
    stale = [f for f in LEGACY_FIELDS if dataset.has_sample_field(f)]
    if stale:
        dataset.delete_sample_fields(stale)


def _xyxy(boxes) -> np.ndarray:
    boxes = np.asarray(boxes or [], np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def add_best_ious(dataset, conf: float) -> None:
    """``best_iou`` on detector and cascade boxes (with the nearest ground-truth box) and ``best_det_iou`` on
    ground-truth boxes (with the nearest detector box at the operating point): how near a miss was."""
    truths, detections, confidences, cascades = dataset.values([
        "ground_truth.detections.bounding_box", "detector.detections.bounding_box",
        "detector.detections.confidence", "cascade.detections.bounding_box"])
    det_best, cascade_best, truth_best = [], [], []
    for truth, det, det_conf, cascade in zip(truths, detections, confidences, cascades):
        truth_xyxy = _xyxy(truth)
        best = lambda boxes: None if boxes is None else [  # noqa: E731
            float(v) for v in (box_iou(_xyxy(boxes), truth_xyxy).max(1) if truth_xyxy.size else np.zeros(len(boxes)))]
        det_best.append(best(det))
        cascade_best.append(best(cascade))
        shown = _xyxy([b for b, c in zip(det or [], det_conf or []) if c >= conf])
        truth_best.append(None if truth is None else [
            float(v) for v in (box_iou(truth_xyxy, shown).max(1) if shown.size else np.zeros(len(truth)))])
    for path, values in (("detector.detections.best_iou", det_best), ("cascade.detections.best_iou", cascade_best),
                         ("ground_truth.detections.best_det_iou", truth_best)):
        if dataset.has_sample_field(path.split(".")[0]):
            dataset.set_values(path, values)


def add_nested_flags(dataset) -> None:
    """``inside_other`` on every ground-truth box: whether it lies inside another one of its slice."""
    truths = dataset.values("ground_truth.detections.bounding_box")
    flags = [None if truth is None else [bool(n) for n in nested_boxes(_xyxy(truth))] for truth in truths]
    dataset.set_values("ground_truth.detections.inside_other", flags)


def hardest_count(n_samples: int) -> int:
    return int(min(HARDEST_MAX, max(HARDEST_MIN, round(HARDEST_SHARE * n_samples))))


def save_views(dataset, conf: float) -> list[str]:
    """Save every view of ``SAVED_VIEWS`` (replacing earlier ones of the same name)."""
    from fiftyone import ViewField as F

    scored = {key: view for key, (_, view, _) in scored_boxes(dataset, conf).items()}
    patches = lambda key: scored[key].to_evaluation_patches(key)  # noqa: E731
    shown = scored["eval_det_op"].filter_labels(
        "cascade", (F("kept") == True) & (F("det_score") >= conf), only_matches=False)  # noqa: E712
    views = {
        "at-operating-point": shown,
        "false-positives-by-confidence": patches("eval_det_op").match(F("type") == "fp")
        .sort_by(F("detector.detections.confidence").max(), reverse=True),
        "missed-tumors": patches("eval_det_op").match(F("type") == "fn"),
        "rejected-but-real": patches("eval_cascade_all_op").match(F("type") == "tp")
        .match(F("cascade.detections").filter(F("kept") == False).length() > 0),  # noqa: E712
        "kept-but-wrong": patches("eval_cascade_op").match(F("type") == "fp")
        .sort_by(F("cascade.detections.confidence").max(), reverse=True),
        "type-confusions": patches("eval_cascade_op").match(F("type") == "tp")
        .match(F("ground_truth.detections").filter(F("type_error") == True).length() > 0),  # noqa: E712
        "suspect-labels": dataset.to_patches("ground_truth").sort_by(F("ground_truth.mistakenness_loc"), reverse=True),
        "nested-labels": dataset.match(F("ground_truth.detections").filter(F("inside_other") == True)  # noqa: E712
                                       .length() > 0),
        "hardest-samples": shown.sort_by("hardness", reverse=True).limit(hardest_count(len(dataset))),
        "duplicates-across-splits": shown.match(F("dup_cross_split") == True).sort_by("dup_group"),  # noqa: E712
    }
    for name, view in views.items():
        if dataset.has_saved_view(name):
            dataset.delete_saved_view(name)
        dataset.save_view(name, view, description=SAVED_VIEWS[name])
    return list(views)
