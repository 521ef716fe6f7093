"""tools/review.py with real (tiny, trained in seconds) models against fiftyone's embedded MongoDB.

The curation round trip, the views' contents and the App in a browser are in tests/test_curation.py."""

import pytest

from conftest import run_tool


def _review(*flags) -> int:
    return run_tool("review", *flags)


@pytest.fixture(scope="module")
def reviewed(tiny_weights):
    import fiftyone as fo

    name = "test-review"
    registry = tiny_weights["registry"]
    assert _review("--registry", registry, "--dataset", name, "load") == 0
    assert _review("--registry", registry, "--dataset", name, "predict", "--det-weights", tiny_weights["det"],
                   "--cls-weights", tiny_weights["cls"], "--conf", "0.001") == 0
    assert _review("--registry", registry, "--dataset", name, "evaluate") == 0
    return fo.load_dataset(name), registry


def test_load_brings_labels_tags_and_audit_fields(reviewed):
    dataset, _ = reviewed
    assert len(dataset) == 29
    assert set(dataset.distinct("dataset")) == {"tiny_yolo", "tiny_coco"}
    assert set(dataset.distinct("split")) == {"train", "val", "test"}
    assert {"tiny_yolo", "tiny_coco", "train", "val", "test"} <= set(dataset.distinct("tags"))
    assert set(dataset.distinct("ground_truth.detections.label")) == {"glioma", "meningioma", "pituitary", "tumor"}
    for field in ("patient", "dup_group", "dup_cross_split", "dup_places", "source_split", "labels_loaded"):
        assert dataset.has_sample_field(field)


def test_predictions_and_evaluation_fields(reviewed):
    dataset, _ = reviewed
    cascade = dataset.values("cascade.detections")
    boxes = [d for sample in cascade for d in (sample or [])]
    assert boxes and all(isinstance(d["kept"], bool) and 0 <= d["tumor_prob"] <= 1 for d in boxes)
    assert dataset.has_sample_field("mistakenness") and dataset.has_sample_field("hardness")
    assert {"eval_det", "eval_cascade", "eval_det_op", "eval_cascade_op"} <= set(dataset.list_evaluations())
    assert dataset.info["operating_point"]["det_conf"] == 0.25  # the shipped setting, whatever --conf stored


def test_commands_that_change_the_dataset_keep_their_arguments_in_it(reviewed, tiny_weights):
    dataset, _ = reviewed
    commands = dataset.info["commands"]
    assert [c["command"] for c in commands] == ["load", "predict", "evaluate"]
    assert commands[1]["conf"] == 0.001 and commands[1]["det_weights"] == str(tiny_weights["det"])
    assert all(c["seed"] == 0 and c["time"] for c in commands)


@pytest.mark.slow
def test_cascade_boxes_on_real_tumors_count_as_found(reviewed):
    """Cascade labels are types and truth may say only "tumor": scoring must still be class-agnostic."""
    import fiftyone as fo

    from curation.mistakes import evaluate

    dataset, _ = reviewed
    scratch = dataset.clone("test-review-perfect")
    try:
        for sample in scratch:
            truth = sample.ground_truth.detections if sample.ground_truth else []
            sample["cascade"] = fo.Detections(detections=[
                fo.Detection(label="glioma", bounding_box=list(d.bounding_box), confidence=0.9, det_score=0.9,
                             tumor_prob=0.9, kept=True) for d in truth])
            sample.save()
        summary = evaluate(scratch)
        n_boxes = scratch.count("ground_truth.detections")
        assert summary["cascade_at_op"] == {"tp": n_boxes, "fp": 0, "fn": 0}
        assert summary["cascade_map"] == pytest.approx(1.0)
        n_typed_not_glioma = scratch.filter_labels(
            "ground_truth", fo.ViewField("label").is_in(["meningioma", "pituitary"])).count("ground_truth.detections")
        assert len(scratch.load_saved_view("type-confusions")) == n_typed_not_glioma
    finally:
        scratch.delete()


def test_saved_views_open(reviewed):
    dataset, _ = reviewed
    from curation.mistakes import SAVED_VIEWS

    assert set(SAVED_VIEWS) <= set(dataset.list_saved_views())
    for name in SAVED_VIEWS:
        dataset.load_saved_view(name).count()
    false_positives = dataset.load_saved_view("false-positives-by-confidence")
    confidences = [max(d.confidence for d in s.detector.detections) for s in false_positives if s.detector.detections]
    assert confidences == sorted(confidences, reverse=True) and all(c >= 0.25 for c in confidences)


@pytest.mark.slow
def test_predict_shows_progress_and_evaluate_is_quiet(reviewed, tiny_weights, capfd):
    dataset, registry = reviewed
    assert _review("--registry", registry, "--dataset", dataset.name, "predict", "--det-weights", tiny_weights["det"],
                   "--cls-weights", tiny_weights["cls"], "--conf", "0.001") == 0
    assert f"{len(dataset)}/{len(dataset)}" in capfd.readouterr().out  # the progress bar's last state
    assert _review("--registry", registry, "--dataset", dataset.name, "evaluate") == 0
    out = capfd.readouterr()
    assert "Evaluating detections" not in out.out + out.err and "Computing" not in out.out + out.err
    assert "saved views:" in out.out and ("typed tumors found" in out.out or "no typed tumor was found" in out.out)
