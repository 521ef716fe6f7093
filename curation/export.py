"""Write the labels users corrected in the App as a YOLO dataset plus a change list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from mri.files import write_atomic, write_csv
from mri.registry import Registry

EXCLUDING_TAGS = ("exclude", "bad_label")
CHANGE_FIELDS = ["image", "dataset", "split", "change", "boxes_before", "boxes_after", "tags"]


def _boxes(detections) -> list[tuple]:
    result = []
    for d in (detections.detections if detections else []):
        x, y, w, h = d.bounding_box
        result.append((d.label, round(x, 4), round(y, 4), round(x + w, 4), round(y + h, 4)))
    return sorted(result)


def _original_boxes(record) -> list[tuple]:
    return sorted((c, *(round(float(v), 4) for v in b)) for b, c in zip(record.boxes, record.classes))


def export_curated(dataset, registry: Registry, records_by_key: dict, out: Path, name: str) -> dict:
    """YOLO dataset (splits as in the review dataset, samples tagged exclude/bad_label left out) + changes.csv."""
    classes = registry.all_classes
    out.mkdir(parents=True, exist_ok=True)
    changes, counts = [], {}
    for split in ("train", "val", "test"):
        view = dataset.match_tags(split).match_tags(list(EXCLUDING_TAGS), bool=False)
        if len(view):
            view.export(export_dir=str(out), dataset_type=_yolo_type(), label_field="ground_truth", split=split,
                        classes=classes, export_media="symlink", progress=False)
        counts[split] = len(view)
    for sample in dataset.select_fields(["ground_truth", "record_key", "dataset", "split"]):
        before = _original_boxes(records_by_key[sample.record_key]) if sample.record_key in records_by_key else []
        after = _boxes(sample.ground_truth)
        flagged = [t for t in sample.tags if t in EXCLUDING_TAGS]
        change = "left out (" + ", ".join(flagged) + ")" if flagged else ("labels edited" if after != before else "")
        if change:
            changes.append({"image": sample.filepath, "dataset": sample.dataset, "split": sample.split, "change": change,
                            "boxes_before": len(before), "boxes_after": len(after), "tags": " ".join(flagged)})
    write_csv(out / "changes.csv", changes, CHANGE_FIELDS)
    entry = {name: {"format": "yolo", "root": str(out.resolve()), "data_yaml": "dataset.yaml",
                    "splits": {"train": "train", "val": "val", "test": "test"},
                    "class_map": {c: c for c in classes}}}
    write_atomic(out / "registry_entry.yaml", yaml.safe_dump({"datasets": entry}, sort_keys=False))
    return {"images": counts, "changes": len(changes), "entry": out / "registry_entry.yaml"}


def _yolo_type():
    import fiftyone as fo

    return fo.types.YOLOv5Dataset


def read_exported_labels(out: Path, split: str) -> dict[str, np.ndarray]:
    """Label lines of an export by image stem (for tests and checks)."""
    labels = {}
    for path in sorted((out / "labels" / split).glob("*.txt")):
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        labels[path.stem] = np.array(lines, np.float32).reshape(-1, 5)
    return labels
