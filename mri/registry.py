"""The dataset registry (``datasets.yaml``): which datasets exist and what their images and boxes are.

``load_registry()`` reads and checks the file; ``Registry.images()`` reads the labels of the chosen
datasets and splits into ``LabeledImage`` records with boxes in the project's classes. Every problem a
user can cause is collected and raised together as a ``DatasetError``, one line per problem, each naming
the file (and line) and what to fix. Images with empty or missing labels are tumor-free negatives.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from mri import PROJECT_ROOT
from mri.scan_io import IMAGE_SUFFIXES

DEFAULT_REGISTRY = PROJECT_ROOT / "datasets.yaml"
FORMATS = ("yolo", "coco")
SPLITS = ("train", "val", "test")
BOX_TOLERANCE = 2e-3  # normalised; exports round coordinates, so allow a hair past the border


class DatasetError(ValueError):
    """Problems found in the registry or in a dataset; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]):
        self.problems = list(dict.fromkeys(problems))  # one line per problem, even if met per split
        super().__init__("\n".join(self.problems))


@dataclass
class LabeledImage:
    dataset: str
    split: str  # the project's split name (train, val, test) as the source assigns it
    path: Path  # absolute path of the image file
    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 normalised to [0, 1]
    classes: list[str]  # project class of each box: a type, or the registry's untyped name
    patient: str | None = None
    size: tuple[int, int] | None = None  # (width, height) where the annotation file says
    source_split: str = ""  # the split the source dataset gave; ``split`` may be reassigned by the audit

    def __post_init__(self):
        self.source_split = self.source_split or self.split

    @property
    def key(self) -> str:
        """Stable identity across runs: dataset, source split and file name."""
        return f"{self.dataset}/{self.source_split}/{self.path.name}"

    @property
    def is_negative(self) -> bool:
        return len(self.classes) == 0


@dataclass
class DatasetSpec:
    name: str
    format: str
    root: Path
    splits: dict[str, str]  # project split -> the source's folder/split name
    class_map: dict[str, str]
    ignore_classes: list[str] = field(default_factory=list)
    data_yaml: str = "data.yaml"
    annotations: str = "{split}/_annotations.coco.json"
    patient_id: dict | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.name, "format": self.format, "root": str(self.root), "splits": self.splits,
            "class_map": self.class_map, "ignore_classes": self.ignore_classes,
            "data_yaml": self.data_yaml, "annotations": self.annotations, "patient_id": self.patient_id,
        }


@dataclass
class Registry:
    path: Path
    classes: list[str]
    untyped: str
    datasets: dict[str, DatasetSpec]
    split_rules: dict

    @property
    def all_classes(self) -> list[str]:
        """The typed classes followed by the untyped one: the order of class indices we write."""
        return [*self.classes, self.untyped]

    def select(self, names: list[str] | None = None) -> list[DatasetSpec]:
        names = list(self.datasets) if not names else names
        unknown = [n for n in names if n not in self.datasets]
        if unknown:
            raise DatasetError(
                [f"{self.path}: unknown dataset '{n}' (known: {', '.join(self.datasets)})" for n in unknown]
            )
        return [self.datasets[n] for n in names]

    def images(self, names: list[str] | None = None, splits: list[str] | None = None) -> list[LabeledImage]:
        """Read and validate the labels of the chosen datasets and splits (default: all of them)."""
        records: list[LabeledImage] = []
        problems: list[str] = []
        for spec in self.select(names):
            reader = _read_yolo if spec.format == "yolo" else _read_coco
            for split in splits or list(spec.splits):
                if split not in spec.splits:
                    problems.append(f"{self.path}: {spec.name} has no split '{split}' (has {', '.join(spec.splits)})")
                    continue
                records += reader(spec, split, self, problems)
            _attach_patients(spec, [r for r in records if r.dataset == spec.name], problems)
        if problems:
            raise DatasetError(problems)
        return records


def load_registry(path: str | Path | None = None) -> Registry:
    """Read ``datasets.yaml`` and check every entry; raise ``DatasetError`` listing all problems."""
    path = Path(path or os.environ.get("MRI_REGISTRY", DEFAULT_REGISTRY)).resolve()
    if not path.is_file():
        raise DatasetError([f"{path}: registry file not found"])
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise DatasetError([f"{path}: not valid YAML ({str(error).splitlines()[0]})"]) from None
    problems: list[str] = []
    classes = list(raw.get("classes") or [])
    untyped = str(raw.get("untyped", "tumor"))
    if not classes:
        problems.append(f"{path}: 'classes' must list the project's tumor types")
    data_dir = Path(os.environ.get("MRI_DATA_DIR") or raw.get("data_dir") or ".")
    if not data_dir.is_absolute():
        data_dir = path.parent / data_dir
    datasets = {}
    for name, entry in (raw.get("datasets") or {}).items():
        spec = _parse_spec(name, entry or {}, data_dir, [*classes, untyped], path, problems)
        if spec is not None:
            datasets[name] = spec
    if not raw.get("datasets"):
        problems.append(f"{path}: no datasets listed under 'datasets'")
    if problems:
        raise DatasetError(problems)
    return Registry(path, classes, untyped, datasets, dict(raw.get("split_rules") or {}))


def _parse_spec(name, entry, data_dir, known_classes, path, problems) -> DatasetSpec | None:
    where = f"{path}: dataset '{name}'"
    fmt = entry.get("format")
    if fmt not in FORMATS:
        problems.append(f"{where}: unknown format '{fmt}' (use one of: {', '.join(FORMATS)})")
        return None
    env_root = os.environ.get(f"MRI_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}_ROOT")
    root = Path(env_root or entry.get("root") or name)
    root = (root if root.is_absolute() else data_dir / root).resolve()
    if not root.is_dir():
        problems.append(f"{where}: root folder {root} does not exist (fix 'root'/'data_dir' or set MRI_DATA_DIR)")
        return None
    splits = {str(k): str(v) for k, v in (entry.get("splits") or {}).items()}
    for split in splits:
        if split not in SPLITS:
            problems.append(f"{where}: split '{split}' is not one of {', '.join(SPLITS)}")
    class_map = {str(k): str(v) for k, v in (entry.get("class_map") or {}).items()}
    for source, target in class_map.items():
        if target not in known_classes:
            problems.append(
                f"{where}: class_map sends '{source}' to '{target}', which is not a project class "
                f"({', '.join(known_classes)})"
            )
    spec = DatasetSpec(
        name=name, format=fmt, root=root, splits=splits, class_map=class_map,
        ignore_classes=[str(c) for c in entry.get("ignore_classes") or []],
        data_yaml=entry.get("data_yaml", "data.yaml"),
        annotations=entry.get("annotations", "{split}/_annotations.coco.json"),
        patient_id=entry.get("patient_id"),
    )
    if spec.patient_id is not None and not ({"pattern"} <= set(spec.patient_id) or {"csv", "file_column", "id_column"} <= set(spec.patient_id)):
        problems.append(f"{where}: patient_id needs 'pattern' or 'csv', 'file_column' and 'id_column'")
    return spec


def _map_class(spec: DatasetSpec, source_name: str, where: str, problems: list[str]) -> str | None:
    """Project class for a source class name; None for ignored classes (their boxes are dropped)."""
    if source_name in spec.class_map:
        return spec.class_map[source_name]
    if source_name not in spec.ignore_classes:
        problems.append(f"{where}: unmapped class '{source_name}' (add it to class_map or ignore_classes of '{spec.name}')")
    return None


def _images_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def yolo_class_names(data_yaml: Path) -> list[str]:
    """Class names from an Ultralytics data.yaml (``names`` as a list or an index->name mapping)."""
    raw = yaml.safe_load(data_yaml.read_text()) or {}
    names = raw.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise DatasetError([f"{data_yaml}: no 'names' list of classes"])


def _read_yolo(spec: DatasetSpec, split: str, registry: Registry, problems: list[str]) -> list[LabeledImage]:
    data_yaml = spec.root / spec.data_yaml
    if not data_yaml.is_file():
        problems.append(f"{data_yaml}: data.yaml not found for dataset '{spec.name}'")
        return []
    try:
        names = yolo_class_names(data_yaml)
    except DatasetError as error:
        problems += error.problems
        return []
    project_names = [_map_class(spec, n, f"{data_yaml}", problems) for n in names]
    image_dir = _yolo_image_dir(data_yaml, spec.splits[split])
    label_dir = _label_dir_for(image_dir)
    if not image_dir.is_dir():
        problems.append(f"{image_dir}: image folder for split '{split}' of '{spec.name}' does not exist")
        return []
    images = _images_in(image_dir)
    if label_dir.is_dir():
        for label in sorted(label_dir.glob("*.txt")):
            if label.stem not in images:
                problems.append(f"{label}: label file without an image in {image_dir}")
    records = []
    for stem, image_path in images.items():
        label = label_dir / f"{stem}.txt"
        boxes, classes = _parse_yolo_label(label, project_names, problems) if label.is_file() else ([], [])
        records.append(
            LabeledImage(spec.name, split, image_path, np.asarray(boxes, np.float32).reshape(-1, 4), classes)
        )
    return records


def _yolo_image_dir(data_yaml: Path, source_split: str) -> Path:
    """The image folder of a split: data.yaml's entry for it (Ultralytics or Roboflow style) or images/<split>."""
    raw = yaml.safe_load(data_yaml.read_text()) or {}
    base = Path(raw.get("path") or data_yaml.parent)
    base = base if base.is_absolute() else (data_yaml.parent / base)
    entry = raw.get(source_split)
    if isinstance(entry, str):
        folder = Path(entry) if Path(entry).is_absolute() else base / entry
        if folder.is_dir():
            return folder.resolve()
        if (data_yaml.parent / entry).is_dir():  # Roboflow writes paths relative to data.yaml's folder's parent
            return (data_yaml.parent / entry).resolve()
        stripped = entry.lstrip("./")
        if (data_yaml.parent / stripped).is_dir():
            return (data_yaml.parent / stripped).resolve()
    return data_yaml.parent / "images" / source_split


def _label_dir_for(image_dir: Path) -> Path:
    """Ultralytics' rule: the label folder is the image folder with its last 'images' part renamed 'labels'."""
    parts = list(image_dir.parts)
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            return Path(*parts)
    return image_dir


def _parse_yolo_label(label: Path, project_names: list[str | None], problems: list[str]):
    boxes, classes, seen = [], [], set()
    for number, line in enumerate(label.read_text().splitlines(), start=1):
        text = " ".join(line.split())
        if not text:
            continue
        where = f"{label}:{number}"
        if text in seen:
            problems.append(f"{where}: duplicate label line '{text}' (remove the repeat)")
            continue
        seen.add(text)
        parts = text.split(" ")
        try:
            class_index, values = int(parts[0]), [float(v) for v in parts[1:]]
        except ValueError:
            problems.append(f"{where}: malformed label line '{text}' (expected 'class x_center y_center width height')")
            continue
        if len(values) == 4:
            x, y, w, h = values
            box = [x - w / 2, y - h / 2, x + w / 2, y + h / 2]
        elif len(values) >= 6 and len(values) % 2 == 0:  # a polygon (segmentation label): use its extent
            xs, ys = values[0::2], values[1::2]
            box = [min(xs), min(ys), max(xs), max(ys)]
        else:
            problems.append(f"{where}: malformed label line '{text}' (expected 'class x_center y_center width height')")
            continue
        if not 0 <= class_index < len(project_names):
            problems.append(f"{where}: class index {class_index} out of range (data.yaml has {len(project_names)} classes)")
            continue
        if not _box_is_valid(box, problems, where):
            continue
        if project_names[class_index] is not None:
            boxes.append(np.clip(box, 0.0, 1.0))
            classes.append(project_names[class_index])
    return boxes, classes


def _box_is_valid(box: list[float], problems: list[str], where: str) -> bool:
    x1, y1, x2, y2 = box
    if not all(np.isfinite(box)) or x2 <= x1 or y2 <= y1:
        problems.append(f"{where}: box has no area or is not finite ({', '.join(f'{v:.4g}' for v in box)})")
        return False
    if x1 < -BOX_TOLERANCE or y1 < -BOX_TOLERANCE or x2 > 1 + BOX_TOLERANCE or y2 > 1 + BOX_TOLERANCE:
        problems.append(f"{where}: box outside the image (x1 y1 x2 y2 = {', '.join(f'{v:.4g}' for v in box)}, normalised)")
        return False
    return True


def _read_coco(spec: DatasetSpec, split: str, registry: Registry, problems: list[str]) -> list[LabeledImage]:
    folder_split = spec.splits[split]
    annotations = spec.root / spec.annotations.format(split=folder_split)
    if not annotations.is_file():
        problems.append(f"{annotations}: COCO annotation file for split '{split}' of '{spec.name}' not found")
        return []
    try:
        coco = json.loads(annotations.read_text())
        categories = {c["id"]: str(c["name"]) for c in coco["categories"]}
        images = {i["id"]: i for i in coco["images"]}
        annotation_list = coco.get("annotations", [])
    except (ValueError, KeyError, TypeError) as error:
        problems.append(f"{annotations}: not a COCO detection file ({error.__class__.__name__}: {error})")
        return []
    project_names = {cid: _map_class(spec, name, str(annotations), problems) for cid, name in categories.items()}
    by_image: dict[int, list] = {image_id: [] for image_id in images}
    seen = set()
    for ann in annotation_list:
        where = f"{annotations}: annotation {ann.get('id')}"
        image = images.get(ann.get("image_id"))
        if image is None:
            problems.append(f"{where}: refers to image id {ann.get('image_id')}, which is not in 'images'")
            continue
        if ann.get("category_id") not in categories:
            problems.append(f"{where}: unknown category id {ann.get('category_id')}")
            continue
        identity = (ann["image_id"], ann["category_id"], tuple(round(float(v), 2) for v in ann.get("bbox", [])))
        if identity in seen:
            problems.append(f"{where}: duplicate box on image '{image['file_name']}' (remove the repeat)")
            continue
        seen.add(identity)
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"{where}: malformed bbox {ann.get('bbox')!r} (expected [x, y, width, height])")
            continue
        width, height = float(image["width"]), float(image["height"])
        box = [x / width, y / height, (x + w) / width, (y + h) / height]
        if not _box_is_valid(box, problems, f"{where} on '{image['file_name']}'"):
            continue
        if project_names[ann["category_id"]] is not None:
            by_image[ann["image_id"]].append((np.clip(box, 0.0, 1.0), project_names[ann["category_id"]]))
    image_dir = annotations.parent
    records = []
    for image_id, image in sorted(images.items(), key=lambda item: item[1]["file_name"]):
        path = image_dir / image["file_name"]
        if not path.is_file():
            problems.append(f"{annotations}: image '{image['file_name']}' is listed but missing from {image_dir}")
            continue
        found = by_image[image_id]
        boxes = np.asarray([b for b, _ in found], np.float32).reshape(-1, 4)
        records.append(LabeledImage(spec.name, split, path, boxes, [c for _, c in found],
                                    size=(int(image["width"]), int(image["height"]))))
    return records


def _attach_patients(spec: DatasetSpec, records: list[LabeledImage], problems: list[str]) -> None:
    rule = spec.patient_id
    if not rule or not records:
        return
    if "pattern" in rule:
        pattern = re.compile(rule["pattern"])
        for record in records:
            match = pattern.search(record.path.name)
            record.patient = match.group(1) if match else None
        return
    table = spec.root / rule["csv"]
    if not table.is_file():
        problems.append(f"{table}: patient table of '{spec.name}' not found")
        return
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = {rule["file_column"], rule["id_column"]} - set(rows[0] if rows else {})
    if missing:
        problems.append(f"{table}: missing column(s) {', '.join(sorted(missing))}")
        return
    patients = {row[rule["file_column"]]: row[rule["id_column"]] for row in rows}
    for record in records:
        record.patient = patients.get(record.path.name)


def class_counts(records: list[LabeledImage]) -> Counter:
    return Counter(c for r in records for c in r.classes)


NEGATIVE_NAMES = {"no tumor", "no_tumor", "notumor", "no-tumor", "negative", "normal", "healthy", "background"}


def match_class_name(name: str, registry: Registry) -> str | None:
    """Our class for a foreign class name, matched by name whatever its case or order; None: not a tumor.

    'Glioma', 'glioma_tumor' and 'GLIOMA' are glioma; any other name mentioning a tumor is the untyped
    class; names that say there is no tumor ('no_tumor', 'normal', ...) are ignored.
    """
    lowered = name.strip().lower()
    if lowered in NEGATIVE_NAMES or lowered.replace("-", " ").replace("_", " ") in NEGATIVE_NAMES:
        return None
    for cls in registry.classes:
        if cls in lowered:
            return cls
    return registry.untyped


def dataset_from_path(path: str | Path, registry: Registry, split: str = "test") -> DatasetSpec:
    """A dataset the registry does not list: a YOLO data.yaml or a COCO json, classes matched by name.

    The whole file is read as ``split`` for a COCO json; for a data.yaml, ``split`` picks its entry.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise DatasetError([f"{path}: no such file (give a registry dataset name, a data.yaml or a COCO json)"])
    if path.suffix in (".yaml", ".yml"):
        names = yolo_class_names(path)
        fmt, extra = "yolo", {"data_yaml": path.name}
        source_split = {"val": "val", "test": "test", "train": "train"}[split]
        raw = yaml.safe_load(path.read_text()) or {}
        if source_split not in raw and split == "val" and "valid" in raw:
            source_split = "valid"
    elif path.suffix == ".json":
        try:
            names = [str(c["name"]) for c in json.loads(path.read_text())["categories"]]
        except (ValueError, KeyError, TypeError) as error:
            raise DatasetError([f"{path}: not a COCO detection file ({error.__class__.__name__}: {error})"]) from None
        fmt, extra, source_split = "coco", {"annotations": str(path)}, split
    else:
        raise DatasetError([f"{path}: expected a YOLO data.yaml or a COCO .json file"])
    class_map = {n: c for n in names if (c := match_class_name(n, registry)) is not None}
    ignore = [n for n in names if n not in class_map]
    return DatasetSpec(name=path.parent.name if fmt == "yolo" else path.parent.parent.name or path.stem,
                       format=fmt, root=path.parent, splits={split: source_split}, class_map=class_map,
                       ignore_classes=ignore, **extra)


def read_dataset(spec: DatasetSpec, registry: Registry, split: str) -> list[LabeledImage]:
    """Records of one split of a dataset that need not be in the registry; raises ``DatasetError``."""
    problems: list[str] = []
    reader = _read_yolo if spec.format == "yolo" else _read_coco
    records = reader(spec, split, registry, problems)
    _attach_patients(spec, records, problems)
    if problems:
        raise DatasetError(problems)
    return records
