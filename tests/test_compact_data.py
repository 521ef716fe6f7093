"""tools/compact_data.py: a downscaled copy that the registry reads with the same labels."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mri.registry import load_registry
from synthetic import COCO_ENTRY, YOLO_ENTRY, make_coco_dataset, make_yolo_dataset, write_registry

PROJECT = Path(__file__).resolve().parents[1]


def test_compact_copy_has_smaller_images_and_the_same_boxes(tmp_path):
    make_yolo_dataset(tmp_path / "data" / "yolo_set", size=160)
    make_coco_dataset(tmp_path / "data" / "coco_set", size=160)
    registry = write_registry(tmp_path / "datasets.yaml", {"tiny_yolo": YOLO_ENTRY, "tiny_coco": COCO_ENTRY},
                              data_dir=tmp_path / "data")
    out = tmp_path / "compact"
    result = subprocess.run([sys.executable, "tools/compact_data.py", "--registry", str(registry), "--out", str(out),
                             "--max-side", "64", "--gray"], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    compact = write_registry(tmp_path / "compact.yaml", {"tiny_yolo": YOLO_ENTRY, "tiny_coco": COCO_ENTRY}, data_dir=out)
    before = {r.key: r for r in load_registry(registry).images()}
    after = {r.key: r for r in load_registry(compact).images()}
    assert before.keys() == after.keys()
    for key, record in after.items():
        assert np.allclose(record.boxes, before[key].boxes, atol=0.02) and record.classes == before[key].classes
        image = cv2.imread(str(record.path), cv2.IMREAD_UNCHANGED)
        assert max(image.shape[:2]) <= 64 and image.ndim == 2


def test_compact_refuses_to_write_into_an_existing_folder(tmp_path, tiny_registry):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    result = subprocess.run([sys.executable, "tools/compact_data.py", "--registry", str(tiny_registry),
                             "--out", str(tmp_path / "taken")], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "not an empty folder" in result.stderr
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep"
