"""Write the labels users corrected in the App as a YOLO dataset, a change list and a registry entry.

An export goes to a new folder each time (``name``, ``name-2``, ...), so samples excluded since an
earlier export can never linger in it. It holds:

* ``data.yaml``, ``images/<split>/`` (links to the source images, named ``<dataset>__<source split>__<file>``
  as in the merge) and ``labels/<split>/`` in the project's classes, for the splits that have images;
* ``patients.csv``: the patient of each image (``<dataset>:<patient>``), so patient-aware splits still work;
* ``changes.csv``: every edited or left-out sample with its boxes before (the source's) and after;
* ``registry_entry.yaml``: the lines to paste under ``datasets:`` in ``datasets.yaml``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import yaml

from curation.labels import describe, label_boxes, record_boxes
from mri.files import new_run_dir, write_atomic, write_csv, write_yaml
from mri.registry import SPLITS, Registry

EXCLUDING_TAGS = ("exclude", "bad_label")
CHANGE_FIELDS = ["image", "dataset", "split", "change", "n_before", "n_after", "boxes_before", "boxes_after", "tags"]
PATIENT_FIELDS = ["file", "patient"]


def export_name(dataset: str, source_split: str, path: str) -> str:
    """File name of an exported image: unique across datasets and source splits (as ``mri.merge.merged_name``)."""
    return f"{dataset}__{source_split}__{Path(path).name}"


def _link(source: str, target: Path) -> None:
    try:
        os.symlink(source, target)
    except OSError:  # file systems without symlinks: copy instead
        shutil.copyfile(source, target)


def export_curated(dataset, registry: Registry, records_by_key: dict, out: Path, name: str) -> dict:
    """Export ``dataset`` into a new folder at ``out`` (or ``out-2``...); samples tagged exclude/bad_label left out.

    ``records_by_key``: the registry's records by ``LabeledImage.key``, the "before" of the change list.
    Returns the folder, images per split, the number of changes and the registry entry's path.
    """
    classes = registry.all_classes
    index_of = {c: i for i, c in enumerate(classes)}
    folder = new_run_dir(out.parent, out.name)
    fields = ["filepath", "tags", "ground_truth", "record_key", "dataset", "split", "source_split", "patient"]
    counts = {split: 0 for split in SPLITS}
    changes, patients, unknown = [], [], set()
    for path, tags, truth, key, source, split, source_split, patient in zip(*dataset.values(fields)):
        record = records_by_key.get(key)
        before = record_boxes(record) if record is not None else []
        after = label_boxes(truth)
        flagged = [t for t in tags if t in EXCLUDING_TAGS]
        change = f"left out ({', '.join(flagged)})" if flagged else ("labels edited" if after != before else "")
        if change:
            changes.append({"image": path, "dataset": source, "split": split, "change": change,
                            "n_before": len(before), "n_after": len(after), "boxes_before": describe(before),
                            "boxes_after": describe(after), "tags": " ".join(sorted(tags))})
        if flagged or split not in counts:
            continue
        file_name = export_name(source, source_split, path)
        for sub in ("images", "labels"):
            (folder / sub / split).mkdir(parents=True, exist_ok=True)
        _link(path, folder / "images" / split / file_name)
        lines = []
        for label, x1, y1, x2, y2 in after:
            if label not in index_of:
                unknown.add(label)
                continue
            lines.append(f"{index_of[label]} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}")
        (folder / "labels" / split / (Path(file_name).stem + ".txt")).write_text("".join(f"{line}\n" for line in lines))
        if patient:
            patients.append({"file": file_name, "patient": f"{source}:{patient}"})
        counts[split] += 1
    splits = [s for s in SPLITS if counts[s]]
    write_yaml(folder / "data.yaml", {"path": str(folder), **{s: f"images/{s}" for s in splits},
                                      "nc": len(classes), "names": classes})
    write_csv(folder / "patients.csv", patients, PATIENT_FIELDS)
    write_csv(folder / "changes.csv", changes, CHANGE_FIELDS)
    entry = registry_entry(name, folder, splits, classes)
    write_atomic(folder / "registry_entry.yaml", entry)
    return {"folder": folder, "images": {s: counts[s] for s in splits}, "changes": len(changes),
            "entry": folder / "registry_entry.yaml", "unknown_labels": sorted(unknown)}


def registry_entry(name: str, folder: Path, splits: list[str], classes: list[str]) -> str:
    """The entry's lines, indented to paste under ``datasets:`` beside the other datasets (not a whole file)."""
    body = {name: {
        "format": "yolo", "root": str(folder), "data_yaml": "data.yaml", "splits": {s: s for s in splits},
        "class_map": {c: c for c in classes},
        "patient_id": {"csv": "patients.csv", "file_column": "file", "id_column": "patient"},
    }}
    lines = yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=120).splitlines()
    header = [
        f"# Curated export '{name}' (python tools/review.py export). Paste the lines below under `datasets:`",
        "# in datasets.yaml, beside the other entries, then check it: python tools/merge.py --datasets " + name,
        "# Its images are the sources' own files: train on it instead of those datasets, not beside them.",
    ]
    return "\n".join(header + ["  " + line for line in lines]) + "\n"


def read_exported_labels(out: Path, split: str) -> dict[str, np.ndarray]:
    """Label lines of an export by image stem (for tests and checks)."""
    labels = {}
    for path in sorted((out / "labels" / split).glob("*.txt")):
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        labels[path.stem] = np.array(lines, np.float32).reshape(-1, 5)
    return labels
