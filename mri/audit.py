"""Find near-duplicate images within and across datasets, and make a leakage-free split from them.

Stage 1 hashes a 32x32 thumbnail of every image (a 64-bit DCT perceptual hash, which survives
re-encoding, resizing, stretching and global contrast changes) and proposes every pair within a small
Hamming distance. Stage 2 verifies each proposal on two 64x64 thumbnails of intensity ranks (blind to
any monotonic intensity change: contrast, gamma, equalisation): their correlation, and the correlation of
their gradient magnitudes. Different patients' slices often share the overall layout and pass the first
test, but their edges differ; re-encoded, rescaled or re-contrasted copies, and neighbouring slices of
one scan, pass both. Joining neighbouring slices is what a patient-aware split needs anyway.
Thresholds were set by looking at sampled pairs on both sides of them (see README). Verified pairs and shared patients
are joined into groups; a group never straddles two splits in the assignment ``assign_splits`` makes.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from mri.label_checks import nested_boxes
from mri.registry import LabeledImage

HASH_THUMB = 32
THUMB = 64  # verification thumbnail side
HASH_BLOCK = 8  # the 8x8 lowest DCT frequencies give 64 bits


@dataclass
class Fingerprint:
    hash_bits: np.ndarray  # (64,) bool
    thumb: np.ndarray  # (THUMB*THUMB,) float32 intensity ranks, zero mean, unit norm
    edges: np.ndarray  # (THUMB*THUMB,) float32 gradient magnitude of the ranks, zero mean, unit norm


def fingerprint(path) -> Fingerprint | None:
    """Perceptual fingerprint of one image file, or None when it cannot be decoded."""
    data = np.fromfile(str(path), np.uint8)
    gray = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_4) if data.size else None
    if gray is None or gray.size == 0:
        return None
    small = cv2.resize(gray, (HASH_THUMB, HASH_THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:HASH_BLOCK, :HASH_BLOCK].flatten()
    bits = low > np.median(low[1:])
    thumb = cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA).ravel()
    counts = np.bincount(thumb, minlength=256).astype(np.float32)
    average_rank = np.cumsum(counts) - (counts + 1) / 2  # tied pixels share their mean rank
    ranks = average_rank[thumb].reshape(THUMB, THUMB) / thumb.size
    edges = cv2.magnitude(cv2.Sobel(ranks, cv2.CV_32F, 1, 0), cv2.Sobel(ranks, cv2.CV_32F, 0, 1))
    return Fingerprint(bits, _unit(ranks), _unit(edges))


def _unit(values: np.ndarray) -> np.ndarray:
    flat = values.ravel().astype(np.float32)
    flat = flat - flat.mean()
    return flat / (float(np.linalg.norm(flat)) or 1.0)


def fingerprints(records: list[LabeledImage], workers: int = 4) -> list[Fingerprint | None]:
    # cv2 releases the GIL while decoding, so threads overlap file reads and decodes.
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fingerprint, [r.path for r in records], chunksize=32))


def candidate_pairs(bits: np.ndarray, max_distance: int) -> np.ndarray:
    """All index pairs (i < j) whose hashes differ in at most ``max_distance`` bits."""
    packed = np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)
    pairs = []
    for i in range(len(packed) - 1):
        distance = np.bitwise_count(packed[i + 1 :] ^ packed[i])
        for j in np.nonzero(distance <= max_distance)[0]:
            pairs.append((i, i + 1 + j))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


class UnionFind:
    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)

    def groups(self) -> list[list[int]]:
        members = defaultdict(list)
        for item in range(len(self.parent)):
            members[self.find(item)].append(item)
        return list(members.values())


def find_duplicates(records: list[LabeledImage], max_distance: int = 12, min_correlation: float = 0.93,
                    min_edge_correlation: float = 0.70):
    """Duplicate groups (lists of record indices, size >= 2), unreadable record indices, and timings."""
    timings = {}
    start = time.perf_counter()
    prints = fingerprints(records)
    timings["fingerprint_s"] = time.perf_counter() - start
    readable = [i for i, p in enumerate(prints) if p is not None]
    unreadable = [i for i, p in enumerate(prints) if p is None]

    start = time.perf_counter()
    bits = np.stack([prints[i].hash_bits for i in readable]) if readable else np.zeros((0, 64), bool)
    pairs = candidate_pairs(bits, max_distance)
    timings["candidates_s"] = time.perf_counter() - start

    start = time.perf_counter()
    verified = pairs[
        (_pair_correlation([prints[i].thumb for i in readable], pairs) >= min_correlation)
        & (_pair_correlation([prints[i].edges for i in readable], pairs) >= min_edge_correlation)
    ]
    union = UnionFind(len(records))
    for a, b in verified:
        union.union(readable[a], readable[b])
    timings["verify_s"] = time.perf_counter() - start
    groups = sorted((sorted(g) for g in union.groups() if len(g) > 1), key=lambda g: g[0])
    stats = {"candidate_pairs": int(len(pairs)), "verified_pairs": int(len(verified))}
    return groups, unreadable, timings, stats


def _pair_correlation(vectors: list[np.ndarray], pairs: np.ndarray) -> np.ndarray:
    if not len(pairs):
        return np.zeros(0, np.float32)
    stacked = np.stack(vectors)
    return np.einsum("ij,ij->i", stacked[pairs[:, 0]], stacked[pairs[:, 1]])


def leakage_groups(records: list[LabeledImage], duplicate_groups: list[list[int]]) -> list[list[int]]:
    """Groups that must share a split: duplicates joined with every image of the same patient."""
    union = UnionFind(len(records))
    for group in duplicate_groups:
        for other in group[1:]:
            union.union(group[0], other)
    first_of_patient = {}
    for index, record in enumerate(records):
        if record.patient is not None:
            union.union(first_of_patient.setdefault((record.dataset, record.patient), index), index)
    return union.groups()


def assign_splits(records: list[LabeledImage], groups: list[list[int]], tie_priority: list[str]) -> list[str]:
    """Split for each record: its group's majority source split, ties to the earliest in ``tie_priority``."""
    assigned = [""] * len(records)
    rank = {split: i for i, split in enumerate(tie_priority)}
    for group in groups:
        votes = Counter(records[i].split for i in group)
        split = min(votes, key=lambda s: (-votes[s], rank.get(s, len(rank))))
        for i in group:
            assigned[i] = split
    return assigned


def patients_across_splits(records: list[LabeledImage]) -> list[dict]:
    splits = defaultdict(set)
    for record in records:
        if record.patient is not None:
            splits[(record.dataset, record.patient)].add(record.split)
    return [
        {"dataset": dataset, "patient": patient, "splits": sorted(found)}
        for (dataset, patient), found in sorted(splits.items())
        if len(found) > 1
    ]


def find_duplicates_by_rules(records: list[LabeledImage], split_rules: dict):
    """``find_duplicates`` with the thresholds of the registry's ``split_rules``."""
    return find_duplicates(
        records,
        max_distance=int(split_rules.get("duplicate_hash_distance", 12)),
        min_correlation=float(split_rules.get("duplicate_min_correlation", 0.93)),
        min_edge_correlation=float(split_rules.get("duplicate_min_edge_correlation", 0.70)),
    )


def audit(records: list[LabeledImage], split_rules: dict) -> tuple[dict, list[dict]]:
    """Run the whole audit; return the report (for audit.json) and the leakage-free split rows."""
    start = time.perf_counter()
    groups, unreadable, timings, stats = find_duplicates_by_rules(records, split_rules)
    member = lambda i: {"dataset": records[i].dataset, "split": records[i].split, "path": str(records[i].path)}  # noqa: E731
    duplicate_groups = []
    for number, group in enumerate(groups):
        datasets = sorted({records[i].dataset for i in group})
        duplicate_groups.append({
            "id": number,
            "size": len(group),
            "datasets": datasets,
            "cross_split": len({records[i].split for i in group}) > 1,
            "cross_dataset": len(datasets) > 1,
            "tumor_free": all(records[i].is_negative for i in group),
            "members": [member(i) for i in group],
        })
    leak_groups = leakage_groups(records, groups)
    assigned = assign_splits(records, leak_groups, list(split_rules.get("tie_priority", ["test", "val", "train"])))
    group_of = {i: n for n, g in enumerate(sorted(leak_groups, key=min)) for i in g}
    split_rows = [
        {"dataset": r.dataset, "source_split": r.split, "file": r.path.name, "split": assigned[i], "group": group_of[i]}
        for i, r in enumerate(records)
    ]
    timings["total_s"] = time.perf_counter() - start
    nested = nested_box_images(records, assigned)
    report = {
        "n_images": len(records),
        "images_per_dataset": dict(Counter(r.dataset for r in records)),
        "candidate_pairs": stats["candidate_pairs"],
        "verified_pairs": stats["verified_pairs"],
        "summary": summarise(records, duplicate_groups, split_rows),
        "duplicate_groups": duplicate_groups,
        "cross_split_groups": [g["id"] for g in duplicate_groups if g["cross_split"]],
        "patients_in_multiple_splits": patients_across_splits(records),
        "nested_box_images": nested,
        "nested_boxes_per_split": nested_box_counts(records, assigned, nested),
        "unreadable": [str(records[i].path) for i in unreadable],
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    return report, split_rows


def nested_box_images(records: list[LabeledImage], assigned: list[str]) -> list[dict]:
    """Images with a true box inside another (``mri.label_checks``); ``split`` is the leakage-free one."""
    found = []
    for record, split in zip(records, assigned):
        nested = int(nested_boxes(record.boxes).sum())
        if nested:
            found.append({"dataset": record.dataset, "split": split, "source_split": record.split,
                          "path": str(record.path), "nested_boxes": nested, "boxes": len(record.boxes)})
    return found


def nested_box_counts(records: list[LabeledImage], assigned: list[str], nested: list[dict]) -> dict:
    """``dataset:split`` -> [nested boxes, all boxes] for every split that has one."""
    totals = Counter()
    for record, split in zip(records, assigned):
        totals[f"{record.dataset}:{split}"] += len(record.boxes)
    counts = Counter()
    for image in nested:
        counts[f"{image['dataset']}:{image['split']}"] += image["nested_boxes"]
    return {key: [counts[key], totals[key]] for key in sorted(counts)}


def summarise(records: list[LabeledImage], duplicate_groups: list[dict], split_rows: list[dict]) -> dict:
    within = Counter()
    for group in duplicate_groups:
        if group["cross_split"] and not group["cross_dataset"]:
            within[group["datasets"][0]] += 1
    shared = Counter()
    for group in duplicate_groups:
        if group["cross_dataset"]:
            shared["+".join(group["datasets"])] += 1
    moved = Counter(f"{row['dataset']}:{row['source_split']}->{row['split']}" for row in split_rows if row["split"] != row["source_split"])
    images_in_groups = sum(g["size"] for g in duplicate_groups)
    return {
        "duplicate_groups": len(duplicate_groups),
        "images_in_duplicate_groups": images_in_groups,
        "cross_split_groups": sum(g["cross_split"] for g in duplicate_groups),
        "cross_split_groups_within_dataset": dict(within),
        "cross_dataset_groups": dict(shared),
        "cross_dataset_tumor_free_groups": sum(g["cross_dataset"] and g["tumor_free"] for g in duplicate_groups),
        "images_moved_by_leakage_free_split": dict(sorted(moved.items())),
        "leakage_free_split_sizes": dict(Counter(row["split"] for row in split_rows)),
    }


def render_markdown(report: dict) -> str:
    summary = report["summary"]
    lines = [
        "# Duplicate and leakage audit",
        "",
        f"Images audited: {report['n_images']} "
        f"({', '.join(f'{k}: {v}' for k, v in report['images_per_dataset'].items())}); "
        f"took {report['timings']['total_s']:.1f} s.",
        "",
        "| finding | count |",
        "|---|---|",
        f"| near-duplicate groups (same image re-encoded, or neighbouring slices) | {summary['duplicate_groups']} |",
        f"| images in those groups | {summary['images_in_duplicate_groups']} |",
        f"| groups crossing a split boundary | {summary['cross_split_groups']} |",
    ]
    lines += [f"| ... inside `{name}` | {count} |" for name, count in summary["cross_split_groups_within_dataset"].items()]
    lines += [f"| groups shared by `{pair}` | {count} |" for pair, count in summary["cross_dataset_groups"].items()]
    lines += [
        f"| ... of them tumor-free | {summary['cross_dataset_tumor_free_groups']} |",
        f"| patients in more than one split | {len(report['patients_in_multiple_splits'])} |",
        f"| unreadable images | {len(report['unreadable'])} |",
        "",
        "## Leakage-free split",
        "",
        "Each group of near-duplicates and same-patient images goes to one split (its members' majority, "
        "ties to the held-out split).",
        "",
        "| split | images |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in sorted(summary["leakage_free_split_sizes"].items())]
    lines += ["", "| moved | images |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary["images_moved_by_leakage_free_split"].items()]
    lines += _nested_section(report.get("nested_boxes_per_split") or {})
    lines += ["", "## Largest cross-split groups", ""]
    crossing = sorted((g for g in report["duplicate_groups"] if g["cross_split"]), key=lambda g: -g["size"])[:10]
    for group in crossing:
        members = ", ".join(f"{m['dataset']}/{m['split']}/{m['path'].rsplit('/', 1)[-1]}" for m in group["members"][:6])
        more = f" and {group['size'] - 6} more" if group["size"] > 6 else ""
        lines.append(f"- group {group['id']} ({group['size']} images): {members}{more}")
    return "\n".join(lines) + "\n"


def _nested_section(per_split: dict) -> list[str]:
    if not per_split:
        return []
    lines = ["", "## True boxes inside another true box of their slice", "",
             "Probably two labelling conventions on one lesion (e.g. its core and the whole lesion), which a detector "
             "that draws one box per lesion rarely matches both; or a second lesion. Listed in audit.json's "
             "`nested_box_images`.", "",
             "| dataset:split (leakage-free) | nested boxes | all boxes |", "|---|---|---|"]
    lines += [f"| {key} | {nested} | {total} |" for key, (nested, total) in per_split.items()]
    return lines
