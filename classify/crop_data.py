"""The classifier's crop dataset, built from the merged, leakage-free registry data and cached.

Labels: 0 no tumor, 1..K the project's tumor types in registry order, and K+1 "tumor of unknown type"
(boxes from sources that only say "tumor": they teach tumor-vs-not, not the type).

* positives: every ground-truth box; in training also jittered copies that imitate a detector's box error
  (centre shift, scale and aspect change);
* negatives: boxes of tumor-sized squares inside the head of tumor-free scans, boxes on tumor scans that do
  not touch any tumor;
* proposals (optional): a trained detector's own boxes on the same scans, labelled by their overlap with
  ground truth (``label_proposals``), so the classifier also learns from what it will be shown at inference:
  loose and shifted boxes around tumors, and the detector's false positives.

Each split is decoded once and cached as ``runs/crops/<hash>/<split>.npz`` so training is compute-bound.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from classify import NO_TUMOR
from classify.crops import CropRule, crop_for_classifier, slice_for_crops
from mri.files import write_atomic
from mri.metrics import box_iou
from mri.offline import RUNS_DIR
from mri.registry import LabeledImage, Registry
from mri.scan_io import ScanReadError, read_scan
from mri.splits import registry_records

CACHE_VERSION = 1
KINDS = ("box", "jitter", "negative_scan", "away_from_tumor", "hard", "proposal")


def class_names(registry: Registry) -> list[str]:
    """Classifier outputs: no tumor, then the project's tumor types."""
    return [NO_TUMOR, *registry.classes]


@dataclass
class CropSet:
    images: np.ndarray  # (N, S, S, 3) uint8 BGR
    labels: np.ndarray  # (N,) int64: 0 no tumor, 1..K types, K+1 tumor of unknown type
    datasets: np.ndarray  # (N,) str: source dataset of each crop
    kinds: np.ndarray  # (N,) str: one of KINDS
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, str))  # (N,) str: image key

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> "CropSet":
        return CropSet(self.images[mask], self.labels[mask], self.datasets[mask], self.kinds[mask], self.sources[mask])


@dataclass(frozen=True)
class CropRecipe:
    jitter_copies: int = 2  # jittered copies per training box
    shift: float = 0.10  # std of the centre shift, in box sizes
    scale: float = 0.15  # std of the log size change
    negatives_per_clean_scan: int = 2
    negatives_per_tumor_scan: int = 1
    proposals_per_scan: int = 4  # a detector's highest-scoring boxes per scan
    proposal_min_conf: float = 0.05
    proposal_tumor_iou: float = 0.5  # a proposal overlapping a tumor this much is that tumor
    proposal_negative_iou: float = 0.3  # one overlapping every tumor less is "no tumor"; between: left out


def head_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of the head (everything brighter than the dark background); the whole image if unsure."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.GaussianBlur(gray, (0, 0), 2)
    _, mask = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ys, xs = np.nonzero(mask)
    height, width = gray.shape
    if len(xs) < 0.05 * gray.size:
        return 0, 0, width, height
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def jitter_box(box: np.ndarray, rng: np.random.Generator, recipe: CropRecipe) -> np.ndarray:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2 + rng.normal(0, recipe.shift) * w
    cy = (y1 + y2) / 2 + rng.normal(0, recipe.shift) * h
    w *= np.exp(rng.normal(0, recipe.scale))
    h *= np.exp(rng.normal(0, recipe.scale))
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


def random_box_in(region, size_wh, rng, avoid: np.ndarray | None = None, tries: int = 20) -> np.ndarray | None:
    """A box of ``size_wh`` pixels inside ``region`` that does not overlap ``avoid`` (None after ``tries``)."""
    x1, y1, x2, y2 = region
    w, h = size_wh
    for _ in range(tries):
        cx = rng.uniform(x1 + w / 2, max(x1 + w / 2, x2 - w / 2))
        cy = rng.uniform(y1 + h / 2, max(y1 + h / 2, y2 - h / 2))
        box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)
        if avoid is None or len(avoid) == 0 or box_iou(box[None], avoid).max() == 0:
            return box
    return None


def crop_label(cls: str, registry: Registry) -> int:
    names = class_names(registry)
    return names.index(cls) if cls in names else len(names)  # unknown type


def build_split(records: list[LabeledImage], registry: Registry, rule: CropRule, train: bool, seed: int,
                recipe: CropRecipe = CropRecipe(), proposals: dict | None = None) -> tuple[CropSet, list[str]]:
    """Crops of one split, and the lines of images that could not be read (skipped).

    ``proposals`` maps an image key to labelled detector boxes, as ``label_proposals`` returns them.
    """
    rng = np.random.default_rng(seed)
    box_sizes = np.array([(b[2] - b[0], b[3] - b[1]) for r in records for b in r.boxes], np.float32).reshape(-1, 2)
    if len(box_sizes) == 0:
        box_sizes = np.array([[0.15, 0.15]], np.float32)
    images, labels, datasets, kinds, sources, skipped = [], [], [], [], [], []

    def add(image, box, label, record, kind):
        images.append(crop_for_classifier(image, box, rule))
        labels.append(label)
        datasets.append(record.dataset)
        kinds.append(kind)
        sources.append(record.key)

    for record in records:
        try:
            image = slice_for_crops(read_scan(record.path)[0].image, rule)
        except ScanReadError as error:
            skipped.append(str(error))
            continue
        height, width = image.shape[:2]
        scale = np.array([width, height, width, height], np.float32)
        gt = record.boxes * scale
        for box, cls in zip(gt, record.classes):
            label = crop_label(cls, registry)
            add(image, box, label, record, "box")
            for _ in range(recipe.jitter_copies if train else 0):
                add(image, jitter_box(box, rng, recipe), label, record, "jitter")
        count = recipe.negatives_per_tumor_scan if len(gt) else recipe.negatives_per_clean_scan
        if not train:
            count = min(count, 1)
        head = head_box(image)
        for _ in range(count):
            size = box_sizes[rng.integers(len(box_sizes))] * np.array([width, height])
            box = random_box_in(head, size, rng, avoid=gt)
            if box is not None:
                add(image, box, 0, record, "away_from_tumor" if len(gt) else "negative_scan")
        for box, cls in (proposals or {}).get(record.key, []):
            if cls is None:
                add(image, np.asarray(box, np.float32), 0, record, "hard")
            else:
                add(image, np.asarray(box, np.float32), crop_label(cls, registry), record, "proposal")
    size = rule.size
    return CropSet(
        np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
        np.asarray(labels, np.int64), np.asarray(datasets, dtype=str), np.asarray(kinds, dtype=str),
        np.asarray(sources, dtype=str),
    ), skipped


def split_records(registry: Registry, names: list[str] | None, leakage_free: bool = True,
                  hold_out: list[str] | None = None) -> dict[str, list[LabeledImage]]:
    records, _ = registry_records(registry, names, leakage_free, hold_out)
    return {split: [r for r in records if r.split == split] for split in ("train", "val", "test")}


def _digest(records: list[LabeledImage], rule: CropRule, recipe: CropRecipe, train: bool, seed: int,
            proposals: dict | None) -> str:
    sha = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "rule": rule.as_dict(), "recipe": recipe.__dict__,
                                     "train": train, "seed": seed}, sort_keys=True).encode())
    for record in records:
        stat = record.path.stat()
        sha.update(f"{record.key}|{stat.st_size}|{stat.st_mtime_ns}|{'|'.join(record.classes)}".encode())
        sha.update(record.boxes.tobytes())
    if proposals:
        sha.update(json.dumps({k: [(np.round(box, 1).tolist(), cls) for box, cls in v]
                               for k, v in sorted(proposals.items())}).encode())
    return sha.hexdigest()[:16]


def cached_split(records, registry, rule, train, seed, recipe=CropRecipe(), proposals=None,
                 cache_dir: Path | None = None) -> CropSet:
    """``build_split`` through the on-disk cache."""
    cache_dir = Path(cache_dir or RUNS_DIR / "crops")
    path = cache_dir / f"{_digest(records, rule, recipe, train, seed, proposals)}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return CropSet(stored["images"], stored["labels"], stored["datasets"], stored["kinds"], stored["sources"])
    crops, skipped = build_split(records, registry, rule, train, seed, recipe, proposals)
    for line in skipped:
        print(f"skipped: {line}")
    import io

    buffer = io.BytesIO()
    np.savez(buffer, images=crops.images, labels=crops.labels, datasets=crops.datasets, kinds=crops.kinds,
             sources=crops.sources)
    write_atomic(path, buffer.getvalue())
    return crops


def proposal_labels(result, recipe: CropRecipe = CropRecipe()) -> list[str | None | bool]:
    """For each predicted box of one ``ImageResult``: the class of the tumor it overlaps by at least
    ``proposal_tumor_iou``, None ("no tumor") below ``proposal_negative_iou`` with every tumor, else False
    (too ambiguous to teach either)."""
    overlap = box_iou(result.pred_boxes, result.gt_boxes)
    labels = []
    for i in range(len(result.pred_boxes)):
        best = int(overlap[i].argmax()) if overlap.shape[1] else -1
        iou = float(overlap[i, best]) if best >= 0 else 0.0
        if iou >= recipe.proposal_tumor_iou:
            labels.append(result.gt_classes[best])
        elif iou < recipe.proposal_negative_iou:
            labels.append(None)
        else:
            labels.append(False)
    return labels


def label_proposals(results: list, recipe: CropRecipe = CropRecipe()) -> dict[str, list[tuple[list[float], str | None]]]:
    """A detector's boxes (``ImageResult`` predictions) as training crops: by image key, the highest-scoring
    ``proposals_per_scan`` boxes above ``proposal_min_conf`` with their ``proposal_labels`` (ambiguous
    ones left out)."""
    labelled = {}
    for result in results:
        labels = proposal_labels(result, recipe)
        order = [i for i in np.argsort(-result.pred_scores, kind="stable")
                 if result.pred_scores[i] >= recipe.proposal_min_conf and labels[i] is not False]
        boxes = [(result.pred_boxes[i].tolist(), labels[i]) for i in order[: recipe.proposals_per_scan]]
        if boxes:
            labelled[result.key] = boxes
    return labelled
