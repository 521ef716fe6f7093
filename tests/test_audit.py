import json
import subprocess
import sys

import cv2
import numpy as np
from conftest import SHARED_DATA, needs_shared_data
from synthetic import synthetic_scan

from mri import PROJECT_ROOT
from mri.audit import assign_splits, find_duplicates, leakage_groups
from mri.registry import LabeledImage


def _record(path, split="train", dataset="d", patient=None):
    return LabeledImage(dataset, split, path, np.zeros((0, 4), np.float32), [], patient)


def test_reencoded_resized_and_contrast_changed_copies_are_found(tmp_path):
    original = synthetic_scan(256, ((0.3, 0.3, 0.5, 0.5),), seed=1)
    cv2.imwrite(str(tmp_path / "a.png"), original)
    copy = cv2.resize(original, (300, 220))  # stretched, like a re-export at another size
    copy = np.clip(255 * (copy / 255.0) ** 0.6 * 1.1, 0, 255).astype(np.uint8)  # gamma and gain
    cv2.imwrite(str(tmp_path / "b.jpg"), copy, [cv2.IMWRITE_JPEG_QUALITY, 60])  # re-encoded
    cv2.imwrite(str(tmp_path / "c.png"), synthetic_scan(256, ((0.6, 0.55, 0.8, 0.75),), seed=7))
    records = [_record(tmp_path / n) for n in ("a.png", "b.jpg", "c.png")]
    groups, unreadable, _, _ = find_duplicates(records)
    assert groups == [[0, 1]] and unreadable == []


def test_unreadable_images_are_reported_not_fatal(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    cv2.imwrite(str(tmp_path / "ok.png"), synthetic_scan(64))
    _, unreadable, _, _ = find_duplicates([_record(tmp_path / "bad.jpg"), _record(tmp_path / "ok.png")])
    assert unreadable == [0]


def test_groups_and_patients_stay_in_one_split(tmp_path):
    records = [
        _record(tmp_path / "a", "train"), _record(tmp_path / "b", "test"), _record(tmp_path / "c", "train"),
        _record(tmp_path / "d", "val", patient="P1"), _record(tmp_path / "e", "train", patient="P1"),
        _record(tmp_path / "f", "train", patient="P1"), _record(tmp_path / "g", "val"),
    ]
    groups = leakage_groups(records, duplicate_groups=[[0, 1, 2]])
    splits = assign_splits(records, groups, ["test", "val", "train"])
    assert splits[:3] == ["train"] * 3  # the majority wins
    assert splits[3:6] == ["train"] * 3  # a patient is never split
    assert splits[6] == "val"  # untouched singleton


def test_ties_go_to_the_held_out_split(tmp_path):
    records = [_record(tmp_path / "a", "train"), _record(tmp_path / "b", "test")]
    assert assign_splits(records, [[0, 1]], ["test", "val", "train"]) == ["test", "test"]


@needs_shared_data
def test_known_cross_split_copy_in_rf_mri4_is_found():
    root = SHARED_DATA / "rf_mri4" / "images"
    train = next((root / "train").glob("m1-178-_jpg.rf.*.jpg"))
    test = next((root / "test").glob("m1-178-_jpg.rf.*.jpg"))
    other = next((root / "train").glob("Tr-me_0010_jpg.rf.*.jpg"))
    records = [_record(train, "train", "rf_mri4"), _record(test, "test", "rf_mri4"), _record(other, "train", "rf_mri4")]
    groups, _, _, _ = find_duplicates(records)
    assert groups == [[0, 1]]


@needs_shared_data
def test_known_tumor_free_copy_shared_by_br35h_and_rf_mri4():
    rf = next((SHARED_DATA / "rf_mri4" / "images" / "val").glob("no-90-_jpg.rf.*.jpg"))
    br = SHARED_DATA / "br35h" / "train" / "no_3859.jpg"
    groups, _, _, _ = find_duplicates([_record(rf, "val", "rf_mri4"), _record(br, "train", "br35h")])
    assert groups == [[0, 1]]


def test_audit_cli_writes_reports_and_split_file(tiny_registry, tmp_path):
    out = tmp_path / "audit"
    splits = tmp_path / "splits.csv"
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "tools" / "audit.py"), "--registry", str(tiny_registry),
         "--out", str(out), "--write-splits", str(splits)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "audit.json").read_text())
    assert report["n_images"] == 21 and "timings" in report and "duplicate_groups" in report
    assert (out / "audit.md").read_text().startswith("# Duplicate and leakage audit")
    header = splits.read_text().splitlines()[0]
    assert header == "dataset,source_split,file,split,group" and len(splits.read_text().splitlines()) == 22


def test_audit_cli_reports_registry_problems_in_one_line_each(tmp_path, tiny_registry):
    label = sorted((tmp_path / "yolo_set" / "labels" / "train").glob("*.txt"))[0]
    label.write_text("0 0.5\n")
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "tools" / "audit.py"), "--registry", str(tiny_registry), "--out", str(tmp_path / "a")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"{label}:1: malformed label line '0 0.5' (expected 'class x_center y_center width height')"


def test_audit_cli_never_overwrites_an_earlier_audit(tiny_registry, tmp_path):
    out = tmp_path / "audit"
    command = [sys.executable, str(PROJECT_ROOT / "tools" / "audit.py"), "--registry", str(tiny_registry), "--out", str(out)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    (out / "audit.md").write_text("my notes on the first audit")
    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert (out / "audit.md").read_text() == "my notes on the first audit"
    assert (tmp_path / "audit-2" / "audit.json").is_file() and str(tmp_path / "audit-2") in second.stdout
