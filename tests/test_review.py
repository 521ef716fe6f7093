"""tools/review.py against fiftyone's real embedded MongoDB; the App in headless Chromium (marked `app`)."""

import csv
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from mri import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "tools"))
import review  # noqa: E402

ARTIFACTS = PROJECT_ROOT / "runs" / "test-artifacts"


def _review(*flags) -> int:
    return review.main(review.get_args_parser().parse_args([*map(str, flags)]))


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
    for field in ("patient", "dup_group", "dup_cross_split", "source_split"):
        assert dataset.has_sample_field(field)


def test_predictions_and_evaluation_fields(reviewed):
    dataset, _ = reviewed
    cascade = dataset.values("cascade.detections")
    boxes = [d for sample in cascade for d in (sample or [])]
    assert boxes and all(isinstance(d["kept"], bool) and 0 <= d["tumor_prob"] <= 1 for d in boxes)
    assert dataset.has_sample_field("mistakenness") and dataset.has_sample_field("hardness")
    assert "eval_det" in dataset.list_evaluations() and "eval_cascade" in dataset.list_evaluations()


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
        n_boxes = sum(len(s.ground_truth.detections) for s in scratch if s.ground_truth)
        assert summary["cascade_report"] == {"tp": n_boxes, "fp": 0, "fn": 0}
        assert summary["cascade_map"] == pytest.approx(1.0)
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
    assert confidences == sorted(confidences, reverse=True)


def test_export_after_an_edit_writes_yolo_labels_and_a_change_list(reviewed, tmp_path):
    import fiftyone as fo

    dataset, registry = reviewed
    tumor_samples = dataset.match_tags("train").match_tags("tiny_yolo").match(fo.ViewField("ground_truth.detections").length() > 0)
    edited, excluded = tumor_samples.limit(2)
    edited.ground_truth.detections[0].bounding_box = [0.1, 0.2, 0.3, 0.4]
    edited.ground_truth.detections[0].label = "pituitary"
    edited.save()
    excluded.tags.append("exclude")
    excluded.save()
    try:
        out = tmp_path / "curated"
        assert _review("--registry", registry, "--dataset", dataset.name, "export", "--out", out, "--name", "tiny_curated") == 0
        from curation.export import read_exported_labels

        labels = read_exported_labels(out, "train")
        edited_stem, excluded_stem = Path(edited.filepath).stem, Path(excluded.filepath).stem
        assert excluded_stem not in labels
        np.testing.assert_allclose(labels[edited_stem], [[2, 0.25, 0.4, 0.3, 0.4]], atol=1e-4)  # pituitary, x y w h
        with open(out / "changes.csv") as handle:
            changes = {Path(row["image"]).stem: row["change"] for row in csv.DictReader(handle)}
        assert changes == {edited_stem: "labels edited", excluded_stem: "left out (exclude)"}
        # the export is ready to be a registry dataset of its own
        import yaml

        from mri.registry import load_registry

        entry = yaml.safe_load((out / "registry_entry.yaml").read_text())["datasets"]
        path = tmp_path / "curated.yaml"
        path.write_text(yaml.safe_dump({"classes": ["glioma", "meningioma", "pituitary"], "untyped": "tumor",
                                        "datasets": entry}))
        records = load_registry(path).images(splits=["train"])
        assert len(records) == len(labels) + sum(1 for _ in (out / "images" / "train").iterdir()) - len(labels)
    finally:
        edited.reload()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.app
def test_app_shows_the_dataset_in_headless_chromium(reviewed, tmp_path):
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    dataset, _ = reviewed
    small = dataset.limit(6).clone("test-review-small", persistent=True)  # visible to the App's process
    port = _free_port()
    server = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "tools" / "review.py"), "--dataset", small.name, "app",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/datasets/{small.name}"
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline and server.poll() is None, "the App did not start"
            time.sleep(1)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic", f"--user-data-dir={tmp_path / 'chromium'}",
                 "--virtual-time-budget=30000", "--window-size=1400,900"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot, dom = ARTIFACTS / "app.png", ""
        for _ in range(10):  # the first page loads also warm the server up; a busy machine needs a few
            dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
            subprocess.run([browser, *flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
            # a page still loading is a small, nearly uniform picture; the sample grid is not
            if dom.count('data-cy="looker"') == 6 and screenshot.stat().st_size > 20_000:
                break
        assert small.name in dom
        assert dom.count('data-cy="looker"') == 6  # one thumbnail per sample
        assert screenshot.stat().st_size > 20_000
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0  # stops cleanly on SIGTERM
        small.delete()
