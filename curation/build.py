"""Build or refresh the persistent fiftyone dataset from the registry without losing edits, and add predictions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curation import quiet_fiftyone
from curation.labels import describe, fingerprint, label_boxes, record_boxes
from mri.registry import LabeledImage, Registry

ON_CONFLICT = ("refuse", "keep-edits", "take-source")
SPLIT_TAGS = ("train", "val", "test")


class EditConflict(ValueError):
    """Samples whose boxes were edited in the review dataset while their source labels changed too."""

    def __init__(self, conflicts: list[str]):
        self.conflicts = conflicts
        super().__init__("\n".join(conflicts))


@dataclass
class LoadReport:
    added: int = 0
    refreshed: int = 0  # existing samples whose registry fields and (unedited) boxes were brought up to date
    relabelled: int = 0  # unedited samples whose source boxes changed, so their ground truth was replaced
    kept_edits: int = 0  # samples whose edited boxes were left as they are
    conflicts: list[str] = field(default_factory=list)  # resolved by --on-conflict keep-edits / take-source


def _detection(fo, box_xyxy_normalised, label: str, **attributes):
    x1, y1, x2, y2 = (float(v) for v in box_xyxy_normalised)
    return fo.Detection(label=label, bounding_box=[x1, y1, x2 - x1, y2 - y1], **attributes)


def _ground_truth(fo, boxes: list[tuple]):
    return fo.Detections(detections=[_detection(fo, b[1:], b[0]) for b in boxes])


@dataclass
class DuplicateInfo:
    group: int  # the audit's group number (as in tools/audit.py's audit.json when it audits the same datasets)
    cross_split: bool  # the group sits in more than one split of the sources
    places: list[str]  # "dataset/source split" of every member of the group


def duplicate_groups(records: list[LabeledImage], registry: Registry) -> dict[str, DuplicateInfo]:
    """The audit's near-duplicate groups of ``records`` (source splits), by record key.

    Pass every registry image (``registry.images()``), not only the ones being loaded: a test image's
    copy in a training split is found only when both are audited.
    """
    from mri.audit import find_duplicates_by_rules

    groups, _, _, _ = find_duplicates_by_rules(records, registry.split_rules)
    info = {}
    for number, group in enumerate(groups):
        places = sorted({f"{records[i].dataset}/{records[i].source_split}" for i in group})
        crossing = len({records[i].source_split for i in group}) > 1
        for index in group:
            info[records[index].key] = DuplicateInfo(number, crossing, places)
    return info


def _registry_fields(record: LabeledImage, duplicates: dict[str, DuplicateInfo]) -> dict:
    dup = duplicates.get(record.key)
    return {
        "dataset": record.dataset, "split": record.split, "source_split": record.source_split,
        "patient": record.patient, "record_key": record.key,
        "dup_group": dup.group if dup else -1, "dup_cross_split": bool(dup and dup.cross_split),
        "dup_places": dup.places if dup else [],
    }


def load_dataset(registry: Registry, records: list[LabeledImage], name: str,
                 duplicates: dict[str, DuplicateInfo] | None = None, on_conflict: str = "refuse"):
    """Create the persistent dataset ``name``, or merge ``records`` into it; returns (dataset, LoadReport).

    New images are added; images already there get their registry fields (split, patient, audit
    groups, source tags) refreshed, and their ground truth replaced by the source's only when nobody
    edited it since the last load. Each sample keeps ``labels_loaded``, the boxes as last loaded, to
    tell edits apart from source changes. A sample edited here *and* changed at the source is a
    conflict: with ``on_conflict="refuse"`` nothing is written and ``EditConflict`` lists them;
    ``"keep-edits"`` keeps the edited boxes, ``"take-source"`` replaces them with the source's.
    """
    import fiftyone as fo

    if on_conflict not in ON_CONFLICT:
        raise ValueError(f"on_conflict must be one of {ON_CONFLICT}")
    duplicates = duplicates or {}
    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name, persistent=True)
    existing = _existing_samples(dataset)
    report = LoadReport()
    updates: dict[str, dict] = {}
    new_samples, conflicts = [], []
    registry_tags = set(SPLIT_TAGS) | set(registry.datasets)
    for record in records:
        source = record_boxes(record)
        fields = _registry_fields(record, duplicates)
        path = str(record.path)
        if path not in existing:
            new_samples.append(fo.Sample(filepath=path, tags=[record.dataset, record.split],
                                         ground_truth=_ground_truth(fo, source), labels_loaded=fingerprint(source),
                                         **fields))
            continue
        sample_id, current, loaded, tags = existing[path]
        current_boxes = label_boxes(current)
        if loaded is None and current_boxes == source:
            loaded = fingerprint(source)
        edited = fingerprint(current_boxes) != loaded
        source_changed = fingerprint(source) != loaded
        fields["tags"] = sorted((set(tags) - registry_tags) | {record.dataset, record.split})
        fields["labels_loaded"] = fingerprint(source)
        if current_boxes == source:
            pass
        elif not edited:
            fields["ground_truth"] = _ground_truth(fo, source)
            report.relabelled += 1
        elif not source_changed:
            report.kept_edits += 1
        else:
            conflicts.append(f"{path}: edited here ({describe(current_boxes) or 'no boxes'}) and changed at the "
                             f"source ({describe(source) or 'no boxes'})")
            if on_conflict == "take-source":
                fields["ground_truth"] = _ground_truth(fo, source)
            else:
                report.kept_edits += 1
        updates[sample_id] = fields
        report.refreshed += 1
    if conflicts and on_conflict == "refuse":
        raise EditConflict(conflicts)
    report.conflicts = conflicts
    _write_updates(dataset, updates)
    if new_samples:
        dataset.add_samples(new_samples, progress=False)
    report.added = len(new_samples)
    dataset.info.update({"classes": list(registry.classes), "untyped": registry.untyped})
    dataset.save()
    with quiet_fiftyone():
        dataset.compute_metadata(progress=False)
    return dataset, report


def _existing_samples(dataset) -> dict[str, tuple]:
    """filepath -> (id, ground truth, boxes as last loaded, tags) of the samples already in ``dataset``."""
    if not len(dataset):
        return {}
    ids, paths, truths, tags = dataset.values(["id", "filepath", "ground_truth", "tags"])
    # datasets made before ``labels_loaded`` existed: unknown, so any difference from the source is a conflict
    loaded = dataset.values("labels_loaded") if dataset.has_sample_field("labels_loaded") else [None] * len(ids)
    return {p: (i, t, f, g) for i, p, t, f, g in zip(ids, paths, truths, loaded, tags)}


def _write_updates(dataset, updates: dict[str, dict]) -> None:
    if not updates:
        return
    for field_name in sorted({key for fields in updates.values() for key in fields}):
        values = {sample_id: fields[field_name] for sample_id, fields in updates.items() if field_name in fields}
        dataset.set_values(field_name, values, key_field="id")


def add_predictions(dataset, cascade, batch: int = 16, conf: float = 0.05, progress: bool = True) -> int:
    """Fill ``detector``, ``cascade`` and ``tumor_verdict`` for every sample; returns the number predicted.

    Every detector box down to ``conf`` is stored (the curves need them); the views cut at the
    operating point that ``evaluate`` reads from ``dataset.info["operating_point"]``.
    """
    import fiftyone as fo
    import fiftyone.core.utils as fou

    from mri.scan_io import ScanReadError, read_scan

    ids, paths = dataset.values(["id", "filepath"])
    predicted = 0
    with fou.ProgressBar(total=len(ids), progress=progress, iters_str="images") as bar:
        for start in range(0, len(ids), batch):
            chunk_ids, chunk_paths = ids[start : start + batch], paths[start : start + batch]
            images, readable = [], []
            for sample_id, path in zip(chunk_ids, chunk_paths):
                try:
                    images.append(read_scan(path)[0].image)
                    readable.append(sample_id)
                except ScanReadError as error:
                    print(f"skipped {error}")
            values = {"detector": {}, "cascade": {}, "tumor_verdict": {}}
            for sample_id, image, detections in zip(readable, images, cascade.run(images, conf=conf) if images else []):
                height, width = image.shape[:2]
                scale = np.array([width, height, width, height], np.float32)
                values["detector"][sample_id] = fo.Detections(detections=[
                    _detection(fo, np.asarray(d.box) / scale, "tumor", confidence=d.det_score) for d in detections])
                values["cascade"][sample_id] = fo.Detections(detections=[
                    _detection(fo, np.asarray(d.box) / scale, d.type, confidence=d.score, det_score=d.det_score,
                               tumor_prob=d.tumor_prob, type_prob=d.type_prob, kept=bool(d.kept)) for d in detections])
                best = max((d.tumor_prob for d in detections), default=0.0)
                p = float(np.clip(best, 1e-4, 1 - 1e-4))
                values["tumor_verdict"][sample_id] = fo.Classification(
                    label="tumor" if any(d.kept for d in detections) else "no_tumor",
                    confidence=p, logits=np.log([1 - p, p]).tolist())
            for field_name, by_id in values.items():
                if by_id:
                    dataset.set_values(field_name, by_id, key_field="id")
            predicted += len(readable)
            bar.update(len(chunk_ids))
    return predicted


def weights_name(path: str | Path) -> str:
    """How a weights file is recorded with the predictions: its path, project-relative where it can be."""
    from mri import PROJECT_ROOT

    path = Path(path).resolve()
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


COMMANDS_KEPT = 50  # entries of ``dataset.info["commands"]`` kept, newest last


def record_command(dataset, arguments: dict) -> None:
    """Keep the resolved arguments of a command that changed ``dataset`` in its info, with the time: the
    dataset (in fiftyone's database) is that command's output, so this is where its arguments are saved."""
    from mri.reporting import utc_now

    entry = {"time": utc_now(), **{k: (str(v) if isinstance(v, Path) else v) for k, v in arguments.items()}}
    dataset.info["commands"] = [*dataset.info.get("commands", []), entry][-COMMANDS_KEPT:]
    dataset.save()
