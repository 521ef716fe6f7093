"""Materialise registry datasets as one Ultralytics-ready detection dataset.

``merge_datasets`` writes ``<out>/<tag>-<hash>/`` with ``images/<split>/`` (links to the source images),
``labels/<split>/`` (labels converted to the project's classes), ``data.yaml`` with absolute paths and
``sources.csv`` tracing every image back to its dataset, source split, file and patient. The folder name
carries a hash of everything that shapes it, so it is rebuilt only when an input changes and two
different merges never share a folder. By default the leakage-free split assignment is applied.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mri.files import lock_if_writable, write_csv, write_yaml
from mri.offline import RUNS_DIR
from mri.registry import LabeledImage, Registry
from mri.splits import default_assignment_path, registry_records

MERGE_VERSION = 1  # bump when the layout written here changes
SOURCE_FIELDS = ["image", "split", "dataset", "source_split", "source_path", "patient", "boxes"]


@dataclass
class MergedDataset:
    root: Path
    data_yaml: Path
    names: list[str]
    counts: dict  # split -> number of images
    unlisted: int  # images the split assignment did not know (kept their source split)


def merge_datasets(
    registry: Registry,
    names: list[str] | None = None,
    *,
    typed: bool = False,
    leakage_free: bool = True,
    hold_out: list[str] | None = None,
    out_dir: str | Path | None = None,
) -> MergedDataset:
    """One detection dataset from the chosen registry datasets (default: all).

    ``typed=False`` writes every box as one class, ``tumor`` (class-agnostic detection); ``typed=True``
    writes the project's tumor types and leaves out images whose boxes carry no type. ``hold_out``
    leaves datasets out together with every image the audit linked to them (see ``registry_records``).
    """
    records, unlisted = registry_records(registry, names, leakage_free, hold_out)
    assignment_path = default_assignment_path(registry) if leakage_free else None
    if typed:
        records = [r for r in records if all(c in registry.classes for c in r.classes)]
    class_names = list(registry.classes) if typed else [registry.untyped]

    digest = _input_digest(registry, names, typed, records, assignment_path)
    kept = sorted(n for n in (names or registry.datasets) if n not in (hold_out or []))
    tag = "-".join(kept) + ("-typed" if typed else "") + "".join(f"-without-{n}" for n in sorted(hold_out or []))
    root = Path(out_dir or RUNS_DIR / "merged") / f"{tag}-{digest[:12]}"
    if not (root / "data.yaml").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        with lock_if_writable(root.with_name(root.name + ".lock")):  # runs started together build it once
            if not (root / "data.yaml").is_file():
                _build(root, records, class_names, registry)
    counts = {split: sum(r.split == split for r in records) for split in ("train", "val", "test")}
    return MergedDataset(root.resolve(), root.resolve() / "data.yaml", class_names, counts, unlisted)


def merged_name(record: LabeledImage) -> str:
    """File name of a record inside the merged dataset: unique across datasets and source splits."""
    return f"{record.dataset}__{record.source_split}__{record.path.name}"


def _input_digest(registry, names, typed, records, assignment_path) -> str:
    sha = hashlib.sha256()
    specs = [s.as_dict() for s in registry.select(names)]
    sha.update(json.dumps({"version": MERGE_VERSION, "typed": typed, "specs": specs,
                           "classes": registry.all_classes}, sort_keys=True).encode())
    for record in records:
        stat = record.path.stat()
        sha.update(f"{record.key}|{record.split}|{record.patient}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
        sha.update(record.boxes.tobytes())
        sha.update("|".join(record.classes).encode())
    if assignment_path is not None and assignment_path.is_file():
        sha.update(assignment_path.read_bytes())
    return sha.hexdigest()


def _link(source: Path, target: Path) -> None:
    try:
        os.symlink(source, target)
    except OSError:  # file systems without symlinks (some Windows set-ups): copy instead
        shutil.copyfile(source, target)


def _build(root: Path, records: list[LabeledImage], class_names: list[str], registry: Registry) -> None:
    building = root.with_name(root.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    index_of = {name: i for i, name in enumerate(class_names)}
    rows = []
    for record in records:
        name = merged_name(record)
        image_dir, label_dir = building / "images" / record.split, building / "labels" / record.split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        _link(record.path, image_dir / name)
        lines = []
        for (x1, y1, x2, y2), cls in zip(record.boxes.tolist(), record.classes):
            index = index_of.get(cls, 0)
            lines.append(f"{index} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}")
        (label_dir / (Path(name).stem + ".txt")).write_text("\n".join(lines) + ("\n" if lines else ""))
        rows.append({
            "image": f"images/{record.split}/{name}", "split": record.split, "dataset": record.dataset,
            "source_split": record.source_split, "source_path": str(record.path),
            "patient": record.patient or "", "boxes": len(record.classes),
        })
    write_csv(building / "sources.csv", rows, SOURCE_FIELDS)
    for split in ("train", "val", "test"):
        (building / "images" / split).mkdir(parents=True, exist_ok=True)
        (building / "labels" / split).mkdir(parents=True, exist_ok=True)
    write_yaml(building / "data.yaml", {
        "path": str(root.resolve()),
        "train": "images/train", "val": "images/val", "test": "images/test",
        "nc": len(class_names), "names": list(class_names),
    })
    shutil.rmtree(root, ignore_errors=True)
    os.replace(building, root)
