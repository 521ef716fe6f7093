"""Score predictions against the labels and save the views people open in the App to review mistakes."""

from __future__ import annotations

SAVED_VIEWS = {
    "false-positives-by-confidence": "detector boxes that match no tumor, most confident first",
    "missed-tumors": "ground-truth tumors the detector did not find",
    "rejected-but-real": "boxes the classifier rejected that were real tumors",
    "kept-but-wrong": "boxes the classifier kept that match no tumor",
    "suspect-labels": "ground-truth boxes fiftyone's brain finds most likely mistaken, or likely missing boxes",
    "hardest-samples": "samples whose tumor verdict is least certain (brain hardness)",
    "duplicates-across-splits": "near-duplicate images that sit in different splits of the sources",
}


def _refresh_agnostic_fields(dataset) -> None:
    """``gt_tumor`` and ``cascade_tumor``: ground truth and cascade boxes with every label "tumor".

    fiftyone counts a match between different labels as a mistake even with ``classwise=False``, so
    class-agnostic scoring needs one label on both sides (the cascade's boxes keep their scores and ``kept``).
    """
    import fiftyone as fo

    for sample in dataset.select_fields(["ground_truth", "cascade"]):
        truth = sample.ground_truth.detections if sample.ground_truth else []
        cascade = sample.cascade.detections if sample.cascade else []
        full = dataset[sample.id]
        full["gt_tumor"] = fo.Detections(detections=[
            fo.Detection(label="tumor", bounding_box=list(d.bounding_box)) for d in truth])
        full["cascade_tumor"] = fo.Detections(detections=[
            fo.Detection(label="tumor", bounding_box=list(d.bounding_box), confidence=d.confidence, kept=d["kept"],
                         type=d.label) for d in cascade])
        full.save()


def evaluate(dataset) -> dict:
    """Evaluate detector and cascade (COCO-style, with mAP), compute mistakenness and hardness, save views."""
    import fiftyone.brain as fob
    from fiftyone import ViewField as F

    _refresh_agnostic_fields(dataset)
    for key in ("eval_det", "eval_cascade", "eval_all"):  # re-evaluating replaces earlier results
        if key in dataset.list_evaluations():
            dataset.delete_evaluation(key)
    detector = dataset.evaluate_detections("detector", gt_field="gt_tumor", eval_key="eval_det", compute_mAP=True,
                                           progress=False)
    kept = dataset.filter_labels("cascade_tumor", F("kept") == True, only_matches=False)  # noqa: E712
    cascade = kept.evaluate_detections("cascade_tumor", gt_field="gt_tumor", eval_key="eval_cascade",
                                       compute_mAP=True, progress=False)
    dataset.evaluate_detections("cascade_tumor", gt_field="gt_tumor", eval_key="eval_all", progress=False)
    fob.compute_mistakenness(dataset, "detector", label_field="gt_tumor")
    fob.compute_hardness(dataset, "tumor_verdict")
    save_views(dataset)
    return {"detector_map": float(detector.mAP()), "cascade_map": float(cascade.mAP()),
            "detector_report": _counts(dataset, "eval_det"), "cascade_report": _counts(kept, "eval_cascade")}


def _counts(view, key: str) -> dict:
    return {"tp": int(sum(view.values(f"{key}_tp"))), "fp": int(sum(view.values(f"{key}_fp"))),
            "fn": int(sum(view.values(f"{key}_fn")))}


def save_views(dataset) -> list[str]:
    from fiftyone import ViewField as F

    views = {
        "false-positives-by-confidence": dataset.filter_labels("detector", F("eval_det") == "fp")
        .sort_by(F("detector.detections.confidence").max(), reverse=True),
        "missed-tumors": dataset.filter_labels("gt_tumor", F("eval_det") == "fn"),
        "rejected-but-real": dataset.filter_labels("cascade_tumor", (F("kept") == False) & (F("eval_all") == "tp")),  # noqa: E712
        "kept-but-wrong": dataset.filter_labels("cascade_tumor", (F("kept") == True) & (F("eval_all") == "fp")),  # noqa: E712
        "suspect-labels": dataset.match((F("mistakenness") > 0.5) | (F("possible_missing") > 0))
        .sort_by("mistakenness", reverse=True),
        "hardest-samples": dataset.sort_by("hardness", reverse=True).limit(200),
        "duplicates-across-splits": dataset.match(F("dup_cross_split") == True).sort_by("dup_group"),  # noqa: E712
    }
    for name, view in views.items():
        if dataset.has_saved_view(name):
            dataset.delete_saved_view(name)
        dataset.save_view(name, view, description=SAVED_VIEWS[name])
    return list(views)
