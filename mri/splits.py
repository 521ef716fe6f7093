"""The leakage-free split assignment written by ``tools/audit.py --write-splits`` and read by the merge."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

from mri.registry import LabeledImage, Registry

FIELDS = ["dataset", "source_split", "file", "split", "group"]


def default_assignment_path(registry: Registry) -> Path | None:
    name = registry.split_rules.get("assignment")
    return (registry.path.parent / name).resolve() if name else None


def keys_linked_to(path: str | Path, datasets: list[str]) -> set[tuple[str, str, str]]:
    """(dataset, source split, file name) of every image in a duplicate/patient group that holds an image
    of ``datasets``: what training must leave out when those datasets are held out as an unseen source."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    groups = {r["group"] for r in rows if r["dataset"] in datasets}
    return {(r["dataset"], r["source_split"], r["file"]) for r in rows if r["group"] in groups}


def load_assignment(path: str | Path) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(dataset, source split, file name) -> (assigned split, duplicate/patient group)."""
    with open(path, newline="") as handle:
        return {(r["dataset"], r["source_split"], r["file"]): (r["split"], r.get("group", "")) for r in csv.DictReader(handle)}


def apply_assignment(records: list[LabeledImage], assignment: dict) -> tuple[list[LabeledImage], int]:
    """Records with their split replaced by the assignment; images it does not list keep theirs.

    Returns the new records and how many were not listed (new data since the audit: re-run it).
    """
    result, unlisted = [], 0
    for record in records:
        assigned = assignment.get((record.dataset, record.source_split, record.path.name))
        unlisted += assigned is None
        result.append(record if assigned is None else _with_split(record, *assigned))
    return result, unlisted


def _with_split(record: LabeledImage, split: str, group: str = "") -> LabeledImage:
    return replace(record, split=split, source_split=record.source_split, group=group or None)


def registry_records(registry: Registry, names: list[str] | None = None,
                     leakage_free: bool = True, hold_out: list[str] | None = None) -> tuple[list[LabeledImage], int]:
    """The chosen datasets' records with the leakage-free split applied (when asked and written).

    ``hold_out`` names datasets kept unseen: their images and every image the audit grouped with one of
    them (a re-encoded copy, a neighbouring slice) are left out. Returns the records and how many the
    assignment did not list (they keep their source split).
    """
    names = [n for n in (names or list(registry.datasets)) if n not in (hold_out or [])]
    records = registry.images(names)
    assignment = default_assignment_path(registry) if leakage_free or hold_out else None
    if assignment is None or not assignment.is_file():
        if hold_out:
            raise FileNotFoundError(f"{registry.path}: holding out {', '.join(hold_out)} needs the audit's split "
                                    "assignment (run `python tools/audit.py --write-splits`)")
        return records, 0
    if hold_out:
        linked = keys_linked_to(assignment, hold_out)
        records = [r for r in records if (r.dataset, r.source_split, r.path.name) not in linked]
    if not leakage_free:
        return records, 0
    return apply_assignment(records, load_assignment(assignment))
