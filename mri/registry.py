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
from mri.files import one_line
from mri.scan_io import IMAGE_SUFFIXES, first_line

DEFAULT_REGISTRY = PROJECT_ROOT / "datasets.yaml"
FORMATS = ("yolo", "coco")
SPLITS = ("train", "val", "test")
BOX_TOLERANCE = 2e-3  # normalised; exports round coordinates, so allow a hair past the border


class DatasetError(ValueError):
    """Problems found in the registry or in a dataset; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]):
        # one line per problem (names from files may hold line breaks), each once even if met per split
        self.problems = list(dict.fromkeys(one_line(str(p)) for p in problems))
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
    group: str | None = None  # the audit's duplicate/patient group (splits/leakage_free.csv), where assigned

    @property
    def resampling_unit(self) -> str:
        """What a bootstrap over images draws as one: the audit's group, else the patient, else the image."""
        if self.group:
            return f"group {self.group}"  # the audit's groups span datasets (a copy in another source)
        return f"{self.dataset} patient {self.patient}" if self.patient else self.key

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
    problems: dict[str, list[str]] = field(default_factory=dict)  # per dataset: problems of its entry

    @property
    def all_classes(self) -> list[str]:
        """The typed classes followed by the untyped one: the order of class indices we write."""
        return [*self.classes, self.untyped]

    def _chosen(self, names: list[str] | None) -> tuple[list[DatasetSpec], list[str]]:
        """The named datasets whose entries are usable, and one line per unknown name or entry problem."""
        names = list(self.datasets) if not names else names
        problems = [f"{self.path}: unknown dataset '{n}' (known: {', '.join(self.datasets)})"
                    for n in names if n not in self.datasets]
        known = [n for n in names if n in self.datasets]
        problems += [line for n in known for line in self.problems.get(n, [])]
        return [self.datasets[n] for n in known if not self.problems.get(n)], problems

    def select(self, names: list[str] | None = None) -> list[DatasetSpec]:
        """The named datasets (default: all); ``DatasetError`` for unknown names or broken entries among them."""
        specs, problems = self._chosen(names)
        if problems:
            raise DatasetError(problems)
        return specs

    def images(self, names: list[str] | None = None, splits: list[str] | None = None) -> list[LabeledImage]:
        """Read and validate the labels of the chosen datasets and splits (default: all of them).

        Every problem of the chosen datasets is reported together: broken entries (a missing root, an
        unknown format) do not hide label problems of the others, and datasets not chosen are not checked.
        """
        records: list[LabeledImage] = []
        specs, problems = self._chosen(names)
        for spec in specs:
            reader = _read_yolo if spec.format == "yolo" else _read_coco
            found = []
            for split in splits or list(spec.splits):
                if split not in spec.splits:
                    problems.append(f"{self.path}: {spec.name} has no split '{split}' (has {', '.join(spec.splits)})")
                    continue
                found += reader(spec, split, self, problems)
            _attach_patients(spec, found, problems)
            records += found
        if problems:
            raise DatasetError(problems)
        return records


def load_registry(path: str | Path | None = None) -> Registry:
    """Read ``datasets.yaml``; raise ``DatasetError`` listing every problem of the file itself.

    Problems of one dataset's entry (a missing root, an unknown format, a bad ``patient_id``) are kept in
    ``Registry.problems`` and reported, with the label problems, when that dataset is used or checked.
    """
    from mri.cli import resolve_path

    path = resolve_path(path or os.environ.get("MRI_REGISTRY", DEFAULT_REGISTRY))
    if not path.is_file():
        raise DatasetError([f"{path}: registry file not found"])
    raw = read_yaml_mapping(path, "the registry")
    problems: list[str] = []
    classes = _string_list(raw.get("classes"), "classes", f"{path}", problems)
    untyped = raw.get("untyped", "tumor")
    if not isinstance(untyped, str) or not untyped:
        problems.append(f"{path}: 'untyped' must be a class name, not {untyped!r}")
        untyped = "tumor"
    if not classes:
        problems.append(f"{path}: 'classes' must list the project's tumor types")
    data_dir = os.environ.get("MRI_DATA_DIR") or raw.get("data_dir") or "."
    if not isinstance(data_dir, str):
        problems.append(f"{path}: 'data_dir' must be a folder path, not {data_dir!r}")
        data_dir = "."
    data_dir = Path(data_dir)
    if not data_dir.is_absolute():
        data_dir = path.parent / data_dir
    if not raw.get("datasets"):
        problems.append(f"{path}: no datasets listed under 'datasets'")
    entries = _mapping(raw.get("datasets") or None, "datasets", f"{path}", problems)
    split_rules = _mapping(raw.get("split_rules"), "split_rules", f"{path}", problems)
    if problems:
        raise DatasetError(problems)
    datasets, entry_problems = {}, {}
    for name, entry in entries.items():
        name = str(name)
        found: list[str] = []
        datasets[name] = _parse_spec(name, entry, data_dir, [*classes, untyped], path, found)
        if found:
            entry_problems[name] = found
    return Registry(path, classes, untyped, datasets, split_rules, entry_problems)


def read_yaml_mapping(path: Path, what: str) -> dict:
    """A YAML file whose top level is a mapping; one-line ``DatasetError`` with line and column otherwise."""
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DatasetError([f"{path}: {what} is not UTF-8 text (byte {error.start})"]) from None
    except OSError as error:
        raise DatasetError([f"{path}: cannot read {what} ({error.strerror})"]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else f"{path}"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise DatasetError([f"{where}: not valid YAML ({problem})"]) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DatasetError([f"{path}: {what} must be a mapping of 'key: value' lines at the top, not a {_kind(raw)}"])
    return raw


def _kind(value) -> str:
    return {list: "list", str: "text", int: "number", float: "number", bool: "true/false"}.get(type(value), type(value).__name__)


def _mapping(value, key: str, where: str, problems: list[str]) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    problems.append(f"{where}: '{key}' must be a mapping of 'key: value' entries, not a {_kind(value)}")
    return {}


def _string_list(value, key: str, where: str, problems: list[str]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return [str(v) for v in value]
    problems.append(f"{where}: '{key}' must be a list of names, not {value!r:.60}")
    return []


def _text(entry: dict, key: str, default: str, where: str, problems: list[str]) -> str:
    value = entry.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        problems.append(f"{where}: '{key}' must be text, not {value!r:.60}")
        return default
    return value


def _parse_spec(name, entry, data_dir, known_classes, path, problems) -> DatasetSpec:
    """The dataset's entry as a ``DatasetSpec``; every problem with it goes to ``problems``."""
    where = f"{path}: dataset '{name}'"
    if not isinstance(entry, dict):
        problems.append(f"{where}: the entry must be a mapping (format, root, splits, class_map...), not {entry!r:.60}")
        entry = {}
    fmt = entry.get("format")
    if fmt not in FORMATS:
        problems.append(f"{where}: unknown format '{fmt}' (use one of: {', '.join(FORMATS)})")
    env_root = os.environ.get(f"MRI_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}_ROOT")
    root = Path(env_root or _text(entry, "root", name, where, problems) or name)
    root = (root if root.is_absolute() else data_dir / root).resolve()
    if not root.is_dir():
        problems.append(f"{where}: root folder {root} does not exist (fix 'root'/'data_dir' or set MRI_DATA_DIR)")
    splits = {str(k): str(v) for k, v in _mapping(entry.get("splits"), "splits", where, problems).items()}
    for split in splits:
        if split not in SPLITS:
            problems.append(f"{where}: split '{split}' is not one of {', '.join(SPLITS)}")
    class_map = {str(k): str(v) for k, v in _mapping(entry.get("class_map"), "class_map", where, problems).items()}
    for source, target in class_map.items():
        if target not in known_classes:
            problems.append(
                f"{where}: class_map sends '{source}' to '{target}', which is not a project class "
                f"({', '.join(known_classes)})"
            )
    annotations = _text(entry, "annotations", "{split}/_annotations.coco.json", where, problems)
    try:
        annotations.format(split="train")
    except (KeyError, IndexError, ValueError):
        problems.append(f"{where}: 'annotations' may hold only the placeholder {{split}}, not {annotations!r}")
        annotations = "{split}/_annotations.coco.json"
    patient_id = _patient_rule(entry.get("patient_id"), where, problems)
    return DatasetSpec(
        name=name, format=str(fmt), root=root, splits=splits, class_map=class_map,
        ignore_classes=_string_list(entry.get("ignore_classes"), "ignore_classes", where, problems),
        data_yaml=_text(entry, "data_yaml", "data.yaml", where, problems),
        annotations=annotations, patient_id=patient_id,
    )


def _patient_rule(rule, where: str, problems: list[str]) -> dict | None:
    """A checked ``patient_id`` rule: a regex with a group, or a CSV with its two columns; None if absent or broken."""
    if rule is None:
        return None
    needs = "patient_id needs 'pattern' (a regex with one group) or 'csv', 'file_column' and 'id_column'"
    if not isinstance(rule, dict):
        problems.append(f"{where}: {needs}, not {rule!r:.60}")
        return None
    if "pattern" in rule:
        try:
            pattern = re.compile(str(rule["pattern"]))
        except re.error as error:
            problems.append(f"{where}: patient_id pattern {rule['pattern']!r} is not a valid regular expression ({error})")
            return None
        if pattern.groups < 1:
            problems.append(f"{where}: patient_id pattern {rule['pattern']!r} needs a group, (...), around the patient id")
            return None
        return {"pattern": str(rule["pattern"])}
    keys = ("csv", "file_column", "id_column")
    if not all(isinstance(rule.get(k), (str, int)) and not isinstance(rule.get(k), bool) for k in keys):
        problems.append(f"{where}: {needs}")
        return None
    return {k: str(rule[k]) for k in keys}


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
    """Class names from an Ultralytics data.yaml (``names`` as a list or an index->name mapping).

    Raises ``DatasetError`` (one line, with line and column for broken YAML) for anything else.
    """
    names = read_yaml_mapping(data_yaml, "data.yaml").get("names")
    if isinstance(names, dict):
        try:
            indices = {int(k): v for k, v in names.items() if not isinstance(k, bool)}
        except (TypeError, ValueError):
            indices = {}
        if len(indices) != len(names) or sorted(indices) != list(range(len(names))):
            raise DatasetError([f"{data_yaml}: 'names' keys must be the class indices 0..{len(names) - 1}, "
                                f"not {', '.join(map(str, list(names)[:6]))}"])
        return [str(indices[i]) for i in range(len(names))]
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
        image_dir = _yolo_image_dir(data_yaml, spec.splits[split])
    except DatasetError as error:
        problems += error.problems
        return []
    project_names = [_map_class(spec, n, f"{data_yaml}", problems) for n in names]
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
    raw = read_yaml_mapping(data_yaml, "data.yaml")
    base = raw.get("path")
    base = Path(base) if isinstance(base, str) and base else data_yaml.parent
    base = base if base.is_absolute() else (data_yaml.parent / base)
    entry = raw.get(source_split)
    if isinstance(entry, str) and entry:
        folder = Path(entry) if Path(entry).is_absolute() else base / entry
        if folder.is_dir():
            return folder.resolve()
        if (data_yaml.parent / entry).is_dir():  # Roboflow writes paths relative to data.yaml's folder's parent
            return (data_yaml.parent / entry).resolve()
        stripped = entry.lstrip("./")
        if stripped and (data_yaml.parent / stripped).is_dir():
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
    try:
        content = label.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        problems.append(f"{label}: not a UTF-8 text label file (byte {error.start}); a label line is "
                        "'class x_center y_center width height'")
        return boxes, classes
    except OSError as error:
        problems.append(f"{label}: cannot read the label file ({error.strerror})")
        return boxes, classes
    for number, line in enumerate(content.splitlines(), start=1):
        text = " ".join(line.split())[:120]
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
        categories, images, annotation_list = read_coco_file(annotations, problems)
    except DatasetError as error:
        problems += error.problems
        return []
    project_names = {cid: _map_class(spec, name, str(annotations), problems) for cid, name in categories.items()}
    by_image: dict = {image_id: [] for image_id in images}
    seen = set()
    for number, ann in enumerate(annotation_list):
        if not isinstance(ann, dict):
            problems.append(f"{annotations}: annotation #{number} is not an object ({ann!r:.60})")
            continue
        where = f"{annotations}: annotation {_scalar(ann.get('id'), f'#{number}')}"
        image = images.get(_scalar(ann.get("image_id")))
        if image is None:
            problems.append(f"{where}: refers to image id {ann.get('image_id')!r:.40}, which is not in 'images'")
            continue
        category = _scalar(ann.get("category_id"))
        if category not in categories:
            problems.append(f"{where}: unknown category id {ann.get('category_id')!r:.40}")
            continue
        bbox = ann.get("bbox")
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError, OverflowError):
            problems.append(f"{where}: malformed bbox {bbox!r:.60} (expected [x, y, width, height])")
            continue
        identity = (_scalar(ann.get("image_id")), category, tuple(round(v, 2) if np.isfinite(v) else v for v in (x, y, w, h)))
        if identity in seen:
            problems.append(f"{where}: duplicate box on image '{image['file_name']}' (remove the repeat)")
            continue
        seen.add(identity)
        width, height = image["width"], image["height"]
        box = [x / width, y / height, (x + w) / width, (y + h) / height]
        if not _box_is_valid(box, problems, f"{where} on '{image['file_name']}'"):
            continue
        if project_names[category] is not None:
            by_image[identity[0]].append((np.clip(box, 0.0, 1.0), project_names[category]))
    image_dir = annotations.parent
    records = []
    for image_id, image in sorted(images.items(), key=lambda item: item[1]["file_name"]):
        path = image_dir / image["file_name"]
        if not _is_file(path):
            problems.append(f"{annotations}: image '{image['file_name']}' is listed but missing from {image_dir}")
            continue
        found = by_image[image_id]
        boxes = np.asarray([b for b, _ in found], np.float32).reshape(-1, 4)
        records.append(LabeledImage(spec.name, split, path, boxes, [c for _, c in found],
                                    size=(int(image["width"]), int(image["height"]))))
    return records


def read_coco_file(path: Path, problems: list[str]) -> tuple[dict, dict, list]:
    """Categories (id -> name), images (id -> checked entry) and raw annotations of a COCO json.

    A file that is not a COCO detection file raises one-line ``DatasetError``; a bad category or image
    entry adds a line to ``problems`` and is left out.
    """
    try:
        coco = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DatasetError([f"{path}: not UTF-8 text (byte {error.start})"]) from None
    except json.JSONDecodeError as error:
        raise DatasetError([f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg})"]) from None
    except (ValueError, RecursionError) as error:
        raise DatasetError([f"{path}: not valid JSON ({error.__class__.__name__})"]) from None
    except OSError as error:
        raise DatasetError([f"{path}: cannot read the file ({error.strerror})"]) from None
    if not isinstance(coco, dict) or not isinstance(coco.get("categories"), list) or not isinstance(coco.get("images"), list):
        raise DatasetError([f"{path}: not a COCO detection file (needs 'categories' and 'images' lists)"])
    annotation_list = coco.get("annotations") or []
    if not isinstance(annotation_list, list):
        raise DatasetError([f"{path}: 'annotations' must be a list"])
    categories = {}
    for number, category in enumerate(coco["categories"]):
        cid = _scalar(category.get("id")) if isinstance(category, dict) else None
        if cid is None or not isinstance(category.get("name"), (str, int, float)):
            problems.append(f"{path}: category #{number} needs an 'id' and a 'name' ({category!r:.60})")
            continue
        categories[cid] = str(category["name"])
    images = {}
    for number, image in enumerate(coco["images"]):
        checked = _coco_image(image)
        if checked is None:
            problems.append(f"{path}: image #{number} needs 'id', 'file_name', 'width' and 'height' > 0 ({image!r:.80})")
            continue
        images[checked["id"]] = checked
    return categories, images, annotation_list


def _coco_image(image) -> dict | None:
    if not isinstance(image, dict) or _scalar(image.get("id")) is None:
        return None
    name, width, height = image.get("file_name"), image.get("width"), image.get("height")
    numbers_ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0 for v in (width, height))
    if not isinstance(name, str) or not name or "\0" in name or not numbers_ok:
        return None
    return {"id": _scalar(image["id"]), "file_name": name, "width": float(width), "height": float(height)}


def _scalar(value, default=None):
    """A COCO id usable as a key (a number or text), else ``default``."""
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return default


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


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
    try:
        with open(table, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except UnicodeDecodeError as error:
        problems.append(f"{table}: patient table is not UTF-8 text (byte {error.start})")
        return
    except (csv.Error, OSError) as error:
        problems.append(f"{table}: unreadable patient table ({first_line(error)})")
        return
    missing = {rule["file_column"], rule["id_column"]} - set(rows[0] if rows else {})
    if missing:
        problems.append(f"{table}: missing column(s) {', '.join(sorted(missing))}")
        return
    patients = {row[rule["file_column"]]: row[rule["id_column"]] for row in rows}
    for record in records:
        record.patient = patients.get(record.path.name)


def class_counts(records: list[LabeledImage]) -> Counter:
    return Counter(c for r in records for c in r.classes)


NEGATIVE_WORDS = {"normal", "healthy", "negative", "background", "notumor", "nontumor", "tumorfree", "tumorless"}
NEGATING_WORDS = {"no", "non", "not", "without", "free", "absent"}  # beside "tumor": there is none


def match_class_name(name: str, registry: Registry) -> str | None:
    """Our class for a foreign class name, matched by name whatever its case or order; None: not a tumor.

    'Glioma', 'glioma_tumor' and 'GLIOMA' are glioma; any other name mentioning a tumor is the untyped
    class; names that say there is no tumor are ignored: 'no_tumor', 'no_tumour', 'non-tumor',
    'tumor-free', 'healthy', 'normal', 'negative', 'background', and a bare 'no'.
    """
    lowered = name.strip().lower().replace("tumour", "tumor")
    words = re.findall(r"[a-z]+", lowered)
    if (NEGATIVE_WORDS & set(words) or words == ["no"]
            or ("tumor" in words and NEGATING_WORDS & set(words))):
        return None
    for cls in registry.classes:
        if cls in lowered:
            return cls
    return registry.untyped


def class_mapping_lines(spec: DatasetSpec, names: list[str], source: Path) -> list[str]:
    """What ``dataset_from_path`` made of each foreign class name, for the user to check."""
    lines = [f"classes of {source} matched by name:"]
    for name in names:
        target = spec.class_map.get(name)
        lines.append(f"  {name!r} -> " + (target if target is not None else "ignored (no tumor)"))
    return lines


def dataset_from_path(path: str | Path, registry: Registry, split: str = "test", report=print) -> DatasetSpec:
    """A dataset the registry does not list: a YOLO data.yaml or a COCO json, classes matched by name.

    The whole file is read as ``split`` for a COCO json; for a data.yaml, ``split`` picks its entry.
    The class mapping it used (foreign name -> ours, or ignored) goes to ``report``, one line each.
    """
    from mri.cli import resolve_path

    path = resolve_path(path)
    if not path.is_file():
        raise DatasetError([f"{path}: no such file (give a registry dataset name, a data.yaml or a COCO json)"])
    if path.suffix in (".yaml", ".yml"):
        names = yolo_class_names(path)
        fmt, extra = "yolo", {"data_yaml": path.name}
        source_split = {"val": "val", "test": "test", "train": "train"}[split]
        raw = read_yaml_mapping(path, "data.yaml")
        if source_split not in raw and split == "val" and "valid" in raw:
            source_split = "valid"
    elif path.suffix == ".json":
        problems: list[str] = []
        categories, _, _ = read_coco_file(path, problems)
        if problems:
            raise DatasetError(problems)
        names = list(dict.fromkeys(categories.values()))
        escaped = str(path).replace("{", "{{").replace("}", "}}")  # the annotations path is a format string
        fmt, extra, source_split = "coco", {"annotations": escaped}, split
    else:
        raise DatasetError([f"{path}: expected a YOLO data.yaml or a COCO .json file"])
    class_map = {n: c for n in names if (c := match_class_name(n, registry)) is not None}
    ignore = [n for n in names if n not in class_map]
    spec = DatasetSpec(name=path.parent.name if fmt == "yolo" else path.parent.parent.name or path.stem,
                       format=fmt, root=path.parent, splits={split: source_split}, class_map=class_map,
                       ignore_classes=ignore, **extra)
    for line in class_mapping_lines(spec, names, path):
        report(line)
    return spec


def read_dataset(spec: DatasetSpec, registry: Registry, split: str) -> list[LabeledImage]:
    """Records of one split of a dataset that need not be in the registry; raises ``DatasetError``."""
    problems: list[str] = []
    reader = _read_yolo if spec.format == "yolo" else _read_coco
    records = reader(spec, split, registry, problems)
    _attach_patients(spec, records, problems)
    if problems:
        raise DatasetError(problems)
    return records
