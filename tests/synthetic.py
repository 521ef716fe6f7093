"""Tiny synthetic MRI-like scans and datasets for tests: a gray head with bright 'tumors' at known boxes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml


def synthetic_scan(size=96, tumors=((0.35, 0.35, 0.55, 0.55),), seed=0, noise=6.0) -> np.ndarray:
    """An 8-bit gray BGR slice: textured elliptical head, ventricles, and a bright blob filling each box."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size), np.float32)
    centre = (size // 2 + int(rng.integers(-3, 4)), size // 2 + int(rng.integers(-3, 4)))
    cv2.ellipse(image, centre, (int(size * 0.4), int(size * 0.46)), 0, 0, 360, 90, -1)
    cv2.ellipse(image, centre, (int(size * 0.4), int(size * 0.46)), 0, 0, 360, 160, max(1, size // 40))
    cv2.ellipse(image, (centre[0] - size // 12, centre[1]), (size // 24, size // 10), 0, 0, 360, 30, -1)
    cv2.ellipse(image, (centre[0] + size // 12, centre[1]), (size // 24, size // 10), 0, 0, 360, 30, -1)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), size / 24)
    image += (image > 0) * texture / (texture.std() + 1e-6) * 15  # smooth tissue texture, as in real slices
    for x1, y1, x2, y2 in tumors:
        c = (int((x1 + x2) / 2 * size), int((y1 + y2) / 2 * size))
        axes = (max(1, int((x2 - x1) / 2 * size)), max(1, int((y2 - y1) / 2 * size)))
        cv2.ellipse(image, c, axes, 0, 0, 360, 230, -1)
    image += rng.normal(0, noise, image.shape)
    return cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def yolo_line(cls: int, box) -> str:
    x1, y1, x2, y2 = box
    return f"{cls} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"


def make_yolo_dataset(root: Path, names=("glioma", "meningioma", "pituitary"), per_split=None, size=96) -> Path:
    """A YOLO dataset: each split has tumor images (class i % nc) and one tumor-free image."""
    per_split = per_split or {"train": 6, "val": 3, "test": 3}
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "val": "images/val", "test": "images/test",
                                                    "nc": len(names), "names": list(names)}))
    seed = 0
    for split, count in per_split.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            seed += 1
            negative = index == count - 1
            rng = np.random.default_rng(seed)
            x1, y1 = rng.uniform(0.25, 0.5, 2)
            box = (x1, y1, x1 + rng.uniform(0.12, 0.2), y1 + rng.uniform(0.12, 0.2))
            tumors = () if negative else (box,)
            stem = f"p{seed:03d}_{split}_{index}"
            cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), synthetic_scan(size, tumors, seed))
            label = "" if negative else yolo_line(index % len(names), box) + "\n"
            (root / "labels" / split / f"{stem}.txt").write_text(label)
    return root


def make_coco_dataset(root: Path, splits=("train", "valid", "test"), per_split=3, size=120) -> Path:
    """A Roboflow-style COCO export: <split>/_annotations.coco.json with a box-less supercategory 0."""
    seed = 100
    for split in splits:
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for index in range(per_split):
            seed += 1
            negative = index == per_split - 1
            box = (0.3, 0.3, 0.5, 0.55)
            name = f"{'no' if negative else 'y'}_{seed}.jpg"
            height = size + 20  # non-square, like real exports
            cv2.imwrite(str(folder / name), cv2.resize(synthetic_scan(size, () if negative else (box,), seed), (size, height)))
            images.append({"id": index, "file_name": name, "width": size, "height": height})
            if not negative:
                x1, y1, x2, y2 = box[0] * size, box[1] * height, box[2] * size, box[3] * height
                annotations.append({"id": len(annotations), "image_id": index, "category_id": 1,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        categories = [{"id": 0, "name": "brain-tumors", "supercategory": "none"},
                      {"id": 1, "name": "tumor", "supercategory": "brain-tumors"}]
        (folder / "_annotations.coco.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
    return root


def write_registry(path: Path, datasets: dict, data_dir: Path | None = None, **extra) -> Path:
    payload = {"classes": ["glioma", "meningioma", "pituitary"], "untyped": "tumor",
               "data_dir": str(data_dir or path.parent), "datasets": datasets, **extra}
    path.write_text(yaml.safe_dump(payload, sort_keys=False))
    return path


YOLO_ENTRY = {"format": "yolo", "root": "yolo_set", "data_yaml": "data.yaml",
              "splits": {"train": "train", "val": "val", "test": "test"},
              "class_map": {"glioma": "glioma", "meningioma": "meningioma", "pituitary": "pituitary"},
              "patient_id": {"pattern": r"^(p\d+)_"}}
COCO_ENTRY = {"format": "coco", "root": "coco_set", "annotations": "{split}/_annotations.coco.json",
              "splits": {"train": "train", "val": "valid", "test": "test"},
              "class_map": {"tumor": "tumor"}, "ignore_classes": ["brain-tumors"]}


def cascade_scans() -> list:
    """Three small scans with one bright tumor-like blob each and one without: enough boxes for a tiny cascade."""
    return [synthetic_scan(96, ((0.3, 0.3, 0.5, 0.5),), seed=i) for i in range(3)] + [synthetic_scan(128, (), seed=7)]
