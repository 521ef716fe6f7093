"""The review dataset's curation round trip, scoring and saved views, and the App in headless Chromium.

Predictions here are made up (boxes placed on the labels, a few wrong on purpose), so every count the
views hold is known; tests/test_review.py runs the same commands with real, tiny models.
"""

import csv
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from curation.labels import label_boxes
from conftest import run_tool
from mri import PROJECT_ROOT


ARTIFACTS = PROJECT_ROOT / "runs" / "test-artifacts"
TYPES = ["glioma", "meningioma", "pituitary"]


def _review(*flags) -> int:
    return run_tool("review", *flags)


def _load(registry, name, *flags) -> int:
    return _review("--registry", registry, "--dataset", name, "load", "--no-audit", *flags)


def _tumor_sample(dataset, tag="tiny_yolo"):
    from fiftyone import ViewField as F

    return dataset.match_tags(tag).match(F("ground_truth.detections").length() > 0).first()


def _yolo_label_of(image_path: str) -> Path:
    path = Path(image_path)
    return path.parents[2] / "labels" / path.parent.name / f"{path.stem}.txt"


def add_made_up_predictions(dataset) -> dict:
    """detector/cascade boxes near every label (confidence 0.9, kept), except: the first tumor is missed, the
    second is rejected by the classifier, every third typed tumor gets the wrong type; one tumor-free image
    gets a false box at 0.8 (kept) and another one at 0.1 (below the operating point).
    Returns the counts each view should hold."""
    import fiftyone as fo

    expected = {"missed": 1, "rejected": 1, "false_at_op": 1, "kept_wrong": 1, "type_errors": 0, "typed_found": 0}
    negatives = 0
    tumor_index = 0
    for sample in dataset.sort_by("filepath"):
        detector, cascade = [], []
        for box in sample.ground_truth.detections:
            tumor_index += 1
            if tumor_index == 1:
                continue  # missed
            typed = box.label in TYPES
            wrong = typed and tumor_index % 3 == 0
            label = TYPES[(TYPES.index(box.label) + 1) % 3] if wrong else (box.label if typed else "glioma")
            kept = tumor_index != 2
            x, y, w, h = box.bounding_box
            shifted = [x + 0.01, y + 0.01, w, h]  # IoU about 0.8, and drawn beside the label's box
            detector.append(fo.Detection(label="tumor", bounding_box=shifted, confidence=0.9))
            cascade.append(fo.Detection(label=label, bounding_box=shifted, confidence=0.9, det_score=0.9,
                                        tumor_prob=0.9 if kept else 0.1, kept=kept))
            if kept and typed:
                expected["typed_found"] += 1
                expected["type_errors"] += wrong
        if not sample.ground_truth.detections:
            negatives += 1
            if negatives in (1, 2):
                score = 0.8 if negatives == 1 else 0.1
                detector.append(fo.Detection(label="tumor", bounding_box=[0.1, 0.1, 0.2, 0.2], confidence=score))
                cascade.append(fo.Detection(label="meningioma", bounding_box=[0.1, 0.1, 0.2, 0.2], confidence=score,
                                            det_score=score, tumor_prob=0.9, kept=True))
        sample["detector"] = fo.Detections(detections=detector)
        sample["cascade"] = fo.Detections(detections=cascade)
        p = 0.9 if cascade else 0.2
        sample["tumor_verdict"] = fo.Classification(label="tumor" if cascade else "no_tumor", confidence=p,
                                                    logits=[float(1 - p), float(p)])
        sample.save()
    return expected


def add_nested_label(dataset) -> None:
    """A second label inside the first box of the last labelled slice (the core and the whole lesion)."""
    import fiftyone as fo

    sample = [s for s in dataset.sort_by("filepath") if s.ground_truth and s.ground_truth.detections][-1]
    outer = sample.ground_truth.detections[0]
    x, y, w, h = outer.bounding_box
    sample.ground_truth.detections.append(
        fo.Detection(label=outer.label, bounding_box=[x + w / 4, y + h / 4, w / 2, h / 2]))
    sample.save()


@pytest.fixture
def curated(tiny_registry, request):
    """A loaded review dataset of the tiny registry (deleted afterwards)."""
    import fiftyone as fo

    name = f"curation-{request.node.name}"[:60]
    assert _load(tiny_registry, name) == 0
    dataset = fo.load_dataset(name)
    yield dataset, tiny_registry
    dataset.delete()


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A review dataset of a tiny registry with made-up predictions, evaluated (shared: tests only read it)."""
    import fiftyone as fo

    from curation.mistakes import evaluate
    from synthetic import COCO_ENTRY, YOLO_ENTRY, make_coco_dataset, make_yolo_dataset, write_registry

    root = tmp_path_factory.mktemp("scored")
    make_yolo_dataset(root / "yolo_set")
    make_coco_dataset(root / "coco_set")
    registry = write_registry(root / "datasets.yaml", {"tiny_yolo": YOLO_ENTRY, "tiny_coco": COCO_ENTRY})
    assert _load(registry, "curation-scored") == 0
    dataset = fo.load_dataset("curation-scored")
    add_nested_label(dataset)
    expected = add_made_up_predictions(dataset)
    yield dataset, registry, expected, evaluate(dataset)
    dataset.delete()


# --- load: merge, never lose an edit ---

@pytest.mark.slow
def test_load_again_keeps_box_edits_and_tags_and_merges_new_splits(tiny_registry):
    import fiftyone as fo

    name = "curation-merge"
    assert _load(tiny_registry, name, "--splits", "train") == 0
    dataset = fo.load_dataset(name)
    first = len(dataset)
    sample = _tumor_sample(dataset)
    sample.ground_truth.detections[0].bounding_box = [0.11, 0.22, 0.33, 0.44]  # as the App's box editor saves it
    sample.tags.append("bad_label")
    sample.save()
    try:
        assert _load(tiny_registry, name) == 0  # all splits now
        sample.reload()
        assert sample.ground_truth.detections[0].bounding_box == pytest.approx([0.11, 0.22, 0.33, 0.44])
        assert "bad_label" in sample.tags and "train" in sample.tags
        assert len(dataset) > first and set(dataset.distinct("split")) == {"train", "val", "test"}
    finally:
        dataset.delete()


def test_unedited_samples_follow_their_source_and_conflicts_are_refused_by_name(tiny_registry, capsys):
    import fiftyone as fo

    name = "curation-conflict"
    assert _load(tiny_registry, name) == 0
    dataset = fo.load_dataset(name)
    try:
        from fiftyone import ViewField as F

        edited, untouched = dataset.match_tags("tiny_yolo").match(F("ground_truth.detections").length() > 0).limit(2)
        untouched_boxes = label_boxes(untouched.ground_truth)
        edited.ground_truth.detections[0].bounding_box = [0.11, 0.22, 0.33, 0.44]
        edited.save()
        for sample in (edited, untouched):  # the source is corrected too
            _yolo_label_of(sample.filepath).write_text("1 0.500000 0.500000 0.200000 0.200000\n")

        assert _load(tiny_registry, name) == 1  # refused, naming the edited sample only
        error = capsys.readouterr().err
        assert edited.filepath in error and untouched.filepath not in error
        untouched.reload()
        assert label_boxes(untouched.ground_truth) == untouched_boxes  # nothing written

        assert _load(tiny_registry, name, "--on-conflict", "keep-edits") == 0
        edited.reload()
        untouched.reload()
        assert edited.ground_truth.detections[0].bounding_box == pytest.approx([0.11, 0.22, 0.33, 0.44])
        assert label_boxes(untouched.ground_truth) == [("meningioma", 0.4, 0.4, 0.6, 0.6)]  # follows its source
        assert _load(tiny_registry, name) == 0  # the kept edit is now an edit of the new source: no conflict left
    finally:
        dataset.delete()


def test_take_source_replaces_a_conflicting_edit(tiny_registry):
    import fiftyone as fo

    name = "curation-take"
    assert _load(tiny_registry, name) == 0
    dataset = fo.load_dataset(name)
    try:
        sample = _tumor_sample(dataset)
        sample.ground_truth.detections[0].bounding_box = [0.11, 0.22, 0.33, 0.44]
        sample.save()
        _yolo_label_of(sample.filepath).write_text("2 0.500000 0.500000 0.200000 0.200000\n")
        assert _load(tiny_registry, name, "--on-conflict", "take-source") == 0
        sample.reload()
        assert label_boxes(sample.ground_truth) == [("pituitary", 0.4, 0.4, 0.6, 0.6)]
    finally:
        dataset.delete()


def test_duplicates_across_splits_come_from_the_audit_of_all_splits(tmp_path):
    import fiftyone as fo

    from synthetic import YOLO_ENTRY, make_yolo_dataset, write_registry

    root = make_yolo_dataset(tmp_path / "yolo_set")
    train_image = sorted((root / "images" / "train").glob("*.jpg"))[0]
    shutil.copy(train_image, root / "images" / "test" / "copy_of_train.jpg")
    shutil.copy(_yolo_label_of(str(train_image)), root / "labels" / "test" / "copy_of_train.txt")
    registry = write_registry(tmp_path / "datasets.yaml", {"tiny_yolo": YOLO_ENTRY})
    name = "curation-dups"
    assert _review("--registry", registry, "--dataset", name, "load", "--splits", "test") == 0
    dataset = fo.load_dataset(name)
    try:
        copy = dataset.match(fo.ViewField("filepath").ends_with("copy_of_train.jpg")).first()
        assert copy.dup_cross_split and copy.dup_places == ["tiny_yolo/test", "tiny_yolo/train"]
        assert dataset.count_values("dup_cross_split") == {True: 1, False: len(dataset) - 1}
    finally:
        dataset.delete()


# --- export: a new folder that loads and merges beside the project's datasets ---

def _paste_entry(registry: Path, entry: Path, target: Path) -> Path:
    """Paste the entry's lines right under `datasets:`, as the README says."""
    lines = registry.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("datasets:")) + 1
    target.write_text("".join(lines[:at]) + entry.read_text() + "".join(lines[at:]))
    return target


def test_round_trip_edit_load_export_paste_merge(tiny_registry, tmp_path):
    import fiftyone as fo

    from curation.export import read_exported_labels

    name = "curation-round-trip"
    assert _load(tiny_registry, name, "--splits", "train", "test") == 0
    dataset = fo.load_dataset(name)
    try:
        from fiftyone import ViewField as F

        edited, excluded = dataset.match_tags("train").match_tags("tiny_yolo").match(
            F("ground_truth.detections").length() > 0).limit(2)
        before_label, before = edited.ground_truth.detections[0].label, edited.ground_truth.detections[0].bounding_box
        edited.ground_truth.detections[0].bounding_box = [0.1, 0.2, 0.3, 0.4]
        edited.ground_truth.detections[0].label = "pituitary"
        edited.save()
        excluded.tags.append("exclude")
        excluded.save()
        assert _load(tiny_registry, name, "--splits", "train", "test") == 0  # a refresh keeps both
        edited.reload()
        assert edited.ground_truth.detections[0].bounding_box == pytest.approx([0.1, 0.2, 0.3, 0.4])

        out = tmp_path / "curated"
        assert _review("--registry", tiny_registry, "--dataset", name, "export", "--out", out, "--name", "tiny_curated") == 0
        labels = read_exported_labels(out, "train")
        edited_stem = f"tiny_yolo__train__{Path(edited.filepath).stem}"
        assert labels[edited_stem].ravel().tolist() == pytest.approx([2, 0.25, 0.4, 0.3, 0.4], abs=1e-4)  # pituitary, x y w h
        assert not any(Path(excluded.filepath).stem in stem for stem in labels)
        with open(out / "changes.csv") as handle:
            changes = {Path(row["image"]).stem: row for row in csv.DictReader(handle)}
        assert set(changes) == {Path(edited.filepath).stem, Path(excluded.filepath).stem}
        row = changes[Path(edited.filepath).stem]
        assert row["dataset"] == "tiny_yolo" and row["change"] == "labels edited"
        x, y, w, h = before
        assert row["boxes_before"] == f"{before_label} {x:.4f} {y:.4f} {x + w:.4f} {y + h:.4f}"
        assert row["boxes_after"] == "pituitary 0.1000 0.2000 0.4000 0.6000"
        assert changes[Path(excluded.filepath).stem]["change"] == "left out (exclude)"

        entry_text = (out / "registry_entry.yaml").read_text()
        assert not any(line.startswith("datasets:") for line in entry_text.splitlines())
        entry = yaml.safe_load(entry_text)["tiny_curated"]
        assert set(entry["splits"]) == {"train", "test"}  # only what was exported
        pasted = _paste_entry(Path(tiny_registry), out / "registry_entry.yaml", tmp_path / "with_curated.yaml")
        from mri.registry import load_registry

        merged_registry = load_registry(pasted)
        assert set(merged_registry.datasets) == {"tiny_yolo", "tiny_coco", "tiny_curated"}  # nothing replaced
        records = merged_registry.images(["tiny_curated"])
        assert len(records) == len(dataset.match_tags("exclude", bool=False))
        assert all(r.patient for r in records if r.path.name.startswith("tiny_yolo__"))  # patients carried over
        assert run_tool("merge", "--registry", pasted, "--datasets", "tiny_curated", "--typed",
                        "--out", tmp_path / "merged") == 0

        again = _review("--registry", tiny_registry, "--dataset", name, "export", "--out", out, "--name", "tiny_curated")
        assert again == 0 and (tmp_path / "curated-2" / "registry_entry.yaml").is_file()  # never into an old export
    finally:
        dataset.delete()


# --- evaluate: views at the operating point, types, suspects ---

def test_views_are_patches_at_the_operating_point(scored):
    from fiftyone import ViewField as F

    dataset, _, expected, summary = scored
    assert summary["operating_conf"] == 0.25
    false_positives = dataset.load_saved_view("false-positives-by-confidence")
    assert len(false_positives) == expected["false_at_op"]  # the 0.1 box is below the operating point
    assert false_positives.values("detector.detections.confidence") == [[pytest.approx(0.8)]]
    assert false_positives.values("detector.detections.best_iou") == [[0.0]]
    missed = dataset.load_saved_view("missed-tumors")
    assert len(missed) == expected["missed"] and missed.values("type") == ["fn"]
    assert len(dataset.load_saved_view("rejected-but-real")) == expected["rejected"]
    assert len(dataset.load_saved_view("kept-but-wrong")) == expected["kept_wrong"]
    found = dataset.to_evaluation_patches("eval_det_op").match(F("type") == "tp")
    assert len(found) and all(0.5 < iou < 1 for iou in found.values("iou"))


def test_types_are_scored_and_confusions_listed(scored):
    dataset, _, expected, summary = scored
    confusion = summary["type_confusion"]
    assert sum(sum(row.values()) for row in confusion.values()) == expected["typed_found"]
    assert sum(n for truth, row in confusion.items() for pred, n in row.items() if pred != truth) == expected["type_errors"]
    assert set(confusion) <= set(TYPES)  # "tumor" labels have no type to get wrong
    assert len(dataset.load_saved_view("type-confusions")) == expected["type_errors"] > 0


@pytest.mark.slow
def test_evaluation_never_rewrites_the_labels(curated):
    from curation.mistakes import evaluate

    dataset, _ = curated
    labels_before = dataset.values("ground_truth.detections.label")
    add_made_up_predictions(dataset)
    evaluate(dataset)
    evaluate(dataset)  # again: replaces its results
    assert dataset.values("ground_truth.detections.label") == labels_before
    assert "tumor" not in dataset.distinct("cascade.detections.label")


def test_suspect_labels_rank_every_box_and_hardest_samples_are_capped(scored):
    from curation.mistakes import hardest_count

    dataset, _, _, _ = scored
    suspects = dataset.load_saved_view("suspect-labels")
    assert len(suspects) == dataset.count("ground_truth.detections")  # ranked, not cut
    scores = [s for s in suspects.values("ground_truth.mistakenness_loc") if s is not None]
    assert scores and scores == sorted(scores, reverse=True)
    assert len(dataset.load_saved_view("hardest-samples")) == hardest_count(len(dataset)) < len(dataset)


def test_boxes_inside_another_box_are_flagged_for_curation(scored):
    dataset, _, _, _ = scored
    nested = dataset.load_saved_view("nested-labels")
    (flags,) = nested.values("ground_truth.detections.inside_other")  # the whole slice: both boxes to compare
    assert len(nested) == 1 and flags.count(True) == 1 and len(flags) >= 2
    flags = [f for sample in dataset.values("ground_truth.detections.inside_other") if sample for f in sample]
    assert flags.count(True) == 1 and len(flags) == dataset.count("ground_truth.detections")


def test_app_config_colours_truth_and_predictions_apart(scored):
    from curation.app_config import FIELD_COLOURS

    dataset, _, _, _ = scored
    colours = {f["path"]: f["fieldColor"] for f in dataset.app_config.color_scheme.fields}
    assert colours == FIELD_COLOURS and len(set(colours.values())) == 3
    assert dataset.app_config.color_scheme.color_by == "field"
    assert dataset.app_config.active_fields.paths == ["ground_truth", "cascade", "detector"]


def test_operating_point_is_the_shipped_detector_setting():
    import inspect

    from cascade.pipeline import Cascade
    from curation.mistakes import SHIPPED_DET_CONF

    assert inspect.signature(Cascade.load).parameters["conf"].default == SHIPPED_DET_CONF


def test_app_with_an_unknown_view_says_which_views_exist(scored, capsys):
    dataset, registry, _, _ = scored
    assert _review("--registry", registry, "--dataset", dataset.name, "app", "--view", "no-such-view") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "no-such-view" in error and "missed-tumors" in error


# --- the App itself ---

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.app
@pytest.mark.slow
def test_app_draws_per_field_colours_and_patches_in_headless_chromium(scored):
    from curation.app import app_url, capture, wait_until_serving
    from curation.browser import find_chromium

    if find_chromium() is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    dataset, _, expected, _ = scored  # persistent, so the App's process sees it
    port = _free_port()
    server = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "tools" / "review.py"), "--dataset", dataset.name,
                               "app", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving("127.0.0.1", port, timeout=120, alive=lambda: server.poll() is None)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        # the default view: truth in green and the cascade's kept boxes in blue, on whole images
        grid = capture(app_url("127.0.0.1", port, dataset.name), ARTIFACTS / "app.png",
                       needs_fields=("ground_truth", "cascade"), timeout=150)
        assert "at-operating-point" in grid["text"] and f"{len(dataset)} samples" in grid["text"]
        assert "Accelerate your workflow" not in grid["text"]  # the "Explore Enterprise" pop-up's title
        # a patches view: one patch per false positive, the detector's box in red
        patches = capture(app_url("127.0.0.1", port, dataset.name, "false-positives-by-confidence"),
                          ARTIFACTS / "app_patches.png", needs_fields=("detector",), timeout=150)
        assert f"{expected['false_at_op']} patch" in patches["text"] and patches["lookers"] == expected["false_at_op"]
        assert "ground_truth" not in patches["colours"]  # false positives have no truth in their patch
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0  # stops cleanly on SIGTERM


def test_field_colours_are_counted_and_pictures_stacked(tmp_path):
    import cv2
    import numpy as np

    from curation.app import colour_pixels, stack_pictures
    from curation.app_config import FIELD_COLOURS

    picture = np.zeros((100, 200, 3), np.uint8)
    cv2.rectangle(picture, (10, 10), (60, 60), (0x76, 0xE6, 0x00), 2)  # ground truth's green, in BGR
    cv2.imwrite(str(tmp_path / "a.png"), picture)
    assert colour_pixels(picture, FIELD_COLOURS["ground_truth"]) > 150
    assert colour_pixels(picture, FIELD_COLOURS["detector"]) == 0
    cv2.imwrite(str(tmp_path / "b.png"), picture[:, :150])
    shots = [{"path": tmp_path / "a.png", "grid_box": [0, 0, 200, 40]}, {"path": tmp_path / "b.png", "grid_box": None}]
    stacked = cv2.imread(str(stack_pictures(shots, tmp_path / "both.png", margin=0)))
    assert stacked.shape == (40 + 6 + 100, 200, 3)  # the first cut below its thumbnails, a white gap, the second
