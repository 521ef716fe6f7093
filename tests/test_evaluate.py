"""tools/evaluate.py: the JSON contract, foreign class names, and the figures it reports."""

import json

import numpy as np
import pytest
import yaml
from synthetic import make_yolo_dataset

from conftest import run_tool

from cascade.evaluation import compare, image_f1, type_accuracy
from mri.metrics import ImageResult, coco_map


SYSTEM_KEYS = {"map50", "map50_ci95", "map50_95", "typed_map50", "sens_at_fp", "fp_per_image_at_sens90", "type_accuracy", "image_f1"}


def _run(tiny_weights, *flags):
    return run_tool("evaluate", "--det-weights", tiny_weights["det"], "--cls-weights", tiny_weights["cls"], *flags)


def test_json_contract_on_a_foreign_dataset_with_other_class_names(tiny_weights, tmp_path):
    # class names in another case and order than ours, one of them unknown to us
    root = make_yolo_dataset(tmp_path / "foreign", names=("Pituitary", "GLIOMA", "Meningioma_Tumor"))
    out = tmp_path / "eval"
    assert _run(tiny_weights, "--data", root / "data.yaml", "--split", "test", "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"detector", "cascade", "n_images", "seconds", "per_dataset"} <= set(metrics)
    for system in ("detector", "cascade"):
        assert SYSTEM_KEYS <= set(metrics[system])
        assert set(metrics[system]["sens_at_fp"]) == {"0.5", "1", "2"}
    assert metrics["n_images"] == 3
    assert metrics["cascade"]["typed_map50"] is not None and metrics["detector"]["typed_map50"] is None
    assert list(metrics["by_resolution"]) == ["under 256 px"]  # the synthetic slices are small
    assert metrics["by_resolution"]["under 256 px"]["cascade"]["n_images"] == 3
    report = (out / "report.md").read_text()
    assert report.startswith("# Detector alone vs cascade") and "| under 256 px | 3 (" in report


def test_foreign_class_names_map_by_name(tiny_registry, tmp_path):
    from mri.registry import dataset_from_path, load_registry, read_dataset

    root = make_yolo_dataset(tmp_path / "foreign", names=("Pituitary", "GLIOMA", "no_tumor"))
    registry = load_registry(tiny_registry)  # a test registry: no shared data needed
    spec = dataset_from_path(root / "data.yaml", registry, "train")
    assert spec.class_map == {"Pituitary": "pituitary", "GLIOMA": "glioma"} and spec.ignore_classes == ["no_tumor"]
    records = read_dataset(spec, registry, "train")
    labels = yaml.safe_load((root / "data.yaml").read_text())["names"]
    first = sorted((root / "labels" / "train").glob("*.txt"))[0].read_text().split()
    expected = {"Pituitary": ["pituitary"], "GLIOMA": ["glioma"], "no_tumor": []}[labels[int(first[0])]]
    assert records[0].classes == expected


def test_registry_dataset_and_existing_output_folder(tiny_weights, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "mine.txt").write_text("user's file")
    assert _run(tiny_weights, "--registry", tiny_weights["registry"], "--data", "tiny_yolo", "--out", out) == 0
    assert (out / "mine.txt").read_text() == "user's file" and not (out / "metrics.json").exists()
    assert (tmp_path / "eval-2" / "metrics.json").is_file()


def test_baseline_is_scored_on_the_same_images_with_the_same_settings(tiny_weights, tmp_path, capsys):
    root = make_yolo_dataset(tmp_path / "foreign")
    out = tmp_path / "versus"
    # a classifier against the same one: the baseline's detector defaults to --det-weights
    assert _run(tiny_weights, "--data", root / "data.yaml", "--split", "test", "--out", out,
                "--baseline-cls-weights", tiny_weights["cls"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    versus = metrics["versus_baseline"]
    assert versus["settings"]["det_weights"] == str(tiny_weights["det"])
    assert {k: v for k, v in versus["settings"].items() if k != "threads"} == \
        {k: v for k, v in metrics["settings"].items() if k != "threads"}
    assert set(versus["per_dataset"]) == set(metrics["per_dataset"])
    for system in ("detector", "cascade"):  # the same system twice: no difference in any draw
        assert versus["overall"][system] == {"difference": 0.0, "ci95": [0.0, 0.0]}
    assert "## Against the baseline" in (out / "report.md").read_text()
    assert _run(tiny_weights, "--data", root / "data.yaml", "--out", tmp_path / "o",
                "--baseline-det-weights", tmp_path / "none.pt") == 2
    assert "none.pt" in capsys.readouterr().err


def test_bad_data_is_one_line(tiny_weights, tmp_path, capsys):
    assert _run(tiny_weights, "--data", tmp_path / "none.yaml", "--out", tmp_path / "o") == 2
    assert "no such file" in capsys.readouterr().err


def _result(gt, gt_classes, boxes, scores, classes, dataset="d"):
    return ImageResult("k", dataset, 100, 100, np.array(gt, np.float32).reshape(-1, 4), gt_classes,
                       np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), classes)


def test_cascade_that_drops_false_positives_scores_better():
    gt = [[10, 10, 40, 40]]
    false_positive = [60, 60, 90, 90]
    detector = [_result(gt, ["glioma"], [gt[0], false_positive], [0.6, 0.9], ["tumor", "tumor"]) for _ in range(4)]
    cascade = [_result(gt, ["glioma"], [gt[0], false_positive], [0.6, 0.1], ["glioma", "glioma"]) for _ in range(4)]
    shown = [_result(gt, ["glioma"], [gt[0]], [0.6], ["glioma"]) for _ in range(4)]
    metrics = compare(detector, cascade, detector, shown, ["glioma", "meningioma", "pituitary"])
    assert metrics["detector"]["fp_per_image_at_sens90"] == 1.0 and metrics["cascade"]["fp_per_image_at_sens90"] == 0.0
    assert metrics["cascade"]["map50"] > metrics["detector"]["map50"]
    assert metrics["cascade"]["type_accuracy"] == 1.0 and metrics["cascade"]["typed_map50"] == pytest.approx(1.0)
    assert metrics["cascade"]["operating_point"] == {"sensitivity": 1.0, "fp_per_image": 0.0}
    assert metrics["detector"]["operating_point"] == {"sensitivity": 1.0, "fp_per_image": 1.0}


def test_versus_baseline_tells_a_real_gain_from_the_choice_of_images():
    from cascade.evaluation import versus_baseline

    gt, far = [[10, 10, 40, 40]], [60, 60, 90, 90]
    finds = [_result(gt, ["glioma"], [gt[0]], [0.9], ["glioma"]) for _ in range(40)]
    misses_half = [_result(gt, ["glioma"], [gt[0] if i % 2 else far], [0.9], ["glioma"]) for i in range(40)]
    for results in (finds, misses_half):
        for i, result in enumerate(results):
            result.key = f"slice{i}"
    better = versus_baseline((finds, finds), (misses_half, misses_half))["overall"]
    gain = coco_map(finds)["map50"] - coco_map(misses_half)["map50"]  # pycocotools' own figures
    assert better["detector"]["difference"] == pytest.approx(gain) and gain > 0.5
    assert 0 < better["detector"]["ci95"][0] < gain < better["detector"]["ci95"][1]
    same = versus_baseline((finds, finds), (finds, finds))["overall"]["cascade"]
    assert same == {"difference": 0.0, "ci95": [0.0, 0.0]}
    with pytest.raises(ValueError, match="same images"):
        versus_baseline((finds, finds), (misses_half[::-1], misses_half[::-1]))


def test_type_accuracy_and_image_f1():
    results = [_result([[0, 0, 10, 10]], ["glioma"], [[0, 0, 10, 10]], [0.9], ["meningioma"]),
               _result([[0, 0, 10, 10]], ["pituitary"], [[0, 0, 10, 10]], [0.9], ["pituitary"]),
               _result([[0, 0, 10, 10]], ["tumor"], [[0, 0, 10, 10]], [0.9], ["glioma"])]
    assert type_accuracy(results, ["glioma", "meningioma", "pituitary"]) == 0.5
    assert image_f1([True, True, False, False], [True, False, True, False]) == 0.5


def test_typed_map_is_undefined_for_a_source_without_types():
    untyped = [_result([[10, 10, 40, 40]], ["tumor"], [[10, 10, 40, 40]], [0.9], ["glioma"]),
               _result([], [], [[50, 50, 60, 60]], [0.4], ["glioma"])]
    metrics = compare(untyped, untyped, untyped, untyped, ["glioma", "meningioma", "pituitary"])
    assert metrics["cascade"]["typed_map50"] is None and metrics["cascade"]["type_accuracy"] is None


def test_out_below_a_file_is_one_line(tiny_weights, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert _run(tiny_weights, "--registry", tiny_weights["registry"], "--data", "tiny_yolo",
                "--out", tmp_path / "file" / "eval") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {tmp_path / 'file' / 'eval'}: cannot create the output folder, {tmp_path / 'file'} is a file"]


def test_localisation_by_type_tells_loose_boxes_from_untouched_tumours():
    from mri.metrics import ImageResult, localisation_by_type

    def image(gt, kind, preds):
        return ImageResult(key=kind, dataset="d", width=100, height=100, gt_boxes=np.array([gt], np.float32),
                           gt_classes=[kind], pred_boxes=np.array(preds, np.float32).reshape(-1, 4),
                           pred_scores=np.linspace(0.9, 0.5, len(preds)).astype(np.float32))

    results = [
        image([10, 10, 30, 30], "meningioma", [[10, 10, 30, 30]]),  # exact
        image([40, 40, 50, 50], "pituitary", [[35, 35, 55, 55]]),  # 4x the area: touched, not found at IoU 0.5
        image([60, 60, 80, 80], "glioma", [[0, 0, 10, 10]]),  # a box elsewhere: not touched
        image([60, 60, 80, 80], "glioma", []),  # no box at all
    ]
    by_type = localisation_by_type(results)
    assert by_type["meningioma"] == {"n_boxes": 1, "found": 1.0, "touched": 1.0, "area_ratio": 1.0,
                                     "size": pytest.approx(0.2), "size_missed": None}
    assert by_type["pituitary"]["found"] == 0.0 and by_type["pituitary"]["touched"] == 1.0
    assert by_type["pituitary"]["area_ratio"] == pytest.approx(4.0)
    assert by_type["glioma"] == {"n_boxes": 2, "found": 0.0, "touched": 0.0, "area_ratio": None,
                                 "size": pytest.approx(0.2), "size_missed": pytest.approx(0.2)}
    assert by_type["pituitary"]["size_missed"] == pytest.approx(0.1)


def test_nested_true_boxes_are_scored_apart_only_where_there_are_some():
    from dataclasses import replace

    from cascade.evaluation import INSIDE_ANOTHER, NOT_NESTED, localisation_by_nesting
    from mri.metrics import ImageResult

    def image(gt, preds):
        return ImageResult(key=str(gt), dataset="d", width=100, height=100, gt_boxes=np.array(gt, np.float32),
                           gt_classes=["tumor"] * len(gt), pred_boxes=np.array(preds, np.float32).reshape(-1, 4),
                           pred_scores=np.full(len(preds), 0.9, np.float32))

    lesion_and_core = image([[10, 10, 60, 60], [20, 20, 35, 35]], [[10, 10, 60, 60]])  # one box for the lesion
    alone = image([[70, 70, 90, 90]], [[70, 70, 90, 90]])
    core_at_low_confidence = replace(lesion_and_core, pred_boxes=np.array([[10, 10, 60, 60], [20, 20, 35, 35]],
                                                                          np.float32),
                                     pred_scores=np.array([0.9, 0.01], np.float32))
    by_nesting = localisation_by_nesting([lesion_and_core, alone], [core_at_low_confidence, alone])
    assert by_nesting[INSIDE_ANOTHER]["n_boxes"] == 1 and by_nesting[INSIDE_ANOTHER]["found"] == 0.0
    assert by_nesting[INSIDE_ANOTHER]["found_any"] == 1.0  # a box below the shipped confidence reaches it
    assert by_nesting[INSIDE_ANOTHER]["touched"] == 1.0 and by_nesting[INSIDE_ANOTHER]["area_ratio"] > 10
    assert by_nesting[NOT_NESTED] == {"n_boxes": 2, "found": 1.0, "touched": 1.0, "area_ratio": 1.0,
                                      "size": pytest.approx(0.35), "size_missed": None, "found_any": 1.0}
    assert localisation_by_nesting([alone], [alone]) == {}


def test_report_tables_nested_boxes_only_where_a_set_has_them():
    from cascade.evaluation import figures
    from cascade.report_md import _localisation_tables
    from mri.metrics import ImageResult

    def block(gt):
        result = ImageResult(key="k", dataset="d", width=100, height=100, gt_boxes=np.array(gt, np.float32),
                             gt_classes=["tumor"] * len(gt), pred_boxes=np.array([gt[0]], np.float32),
                             pred_scores=np.array([0.9], np.float32))
        system = figures([result], [result], ["glioma"], typed=False)
        return {"detector": system, "cascade": system}

    nested = "\n".join(_localisation_tables(block([[10, 10, 60, 60], [20, 20, 35, 35]])))
    assert "| inside another box | 1 | 0.000 |" in nested and "| not nested | 1 | 1.000 |" in nested
    assert "found by a box at any confidence, detector" in nested
    assert "inside another" not in "\n".join(_localisation_tables(block([[10, 10, 60, 60]])))
