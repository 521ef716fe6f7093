"""Build or refresh the persistent fiftyone dataset from the registry, and add model predictions."""

from __future__ import annotations

import numpy as np

from mri.registry import LabeledImage, Registry


def _detection(fo, box_xyxy_normalised, label: str, **attributes):
    x1, y1, x2, y2 = (float(v) for v in box_xyxy_normalised)
    return fo.Detection(label=label, bounding_box=[x1, y1, x2 - x1, y2 - y1], **attributes)


def duplicate_groups(records: list[LabeledImage], registry: Registry) -> tuple[dict, set]:
    """Audit group of each record key, and the groups that cross splits."""
    from mri.audit import find_duplicates_by_rules

    groups, _, _, _ = find_duplicates_by_rules(records, registry.split_rules)
    group_of, crossing = {}, set()
    for number, group in enumerate(groups):
        for index in group:
            group_of[records[index].key] = number
        if len({records[i].split for i in group}) > 1:
            crossing.add(number)
    return group_of, crossing


def load_dataset(registry: Registry, records: list[LabeledImage], name: str, audit: bool = True):
    """Create (or refresh: samples are replaced by file path) the persistent dataset ``name``."""
    import fiftyone as fo

    group_of, crossing = duplicate_groups(records, registry) if audit else ({}, set())
    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name, persistent=True)
    existing = {s.filepath: s for s in dataset.select_fields(["filepath"])} if len(dataset) else {}
    new_samples = []
    for record in records:
        group = group_of.get(record.key, -1)
        fields = {
            "ground_truth": fo.Detections(detections=[_detection(fo, b, c) for b, c in zip(record.boxes, record.classes)]),
            "dataset": record.dataset, "split": record.split, "source_split": record.source_split,
            "patient": record.patient, "dup_group": group, "dup_cross_split": group in crossing, "record_key": record.key,
        }
        path = str(record.path)
        if path in existing:
            sample = dataset[existing[path].id]
            sample.tags = sorted(set(t for t in sample.tags if t not in ("train", "val", "test") and t not in registry.datasets)
                                 | {record.dataset, record.split})
            for key, value in fields.items():
                sample[key] = value
            sample.save()
        else:
            new_samples.append(fo.Sample(filepath=path, tags=[record.dataset, record.split], **fields))
    if new_samples:
        dataset.add_samples(new_samples, progress=False)
    dataset.compute_metadata(progress=False)
    return dataset


def add_predictions(dataset, cascade, batch: int = 16, conf: float = 0.05) -> int:
    """Fill ``detector`` and ``cascade`` for every sample; returns the number of samples predicted."""
    import fiftyone as fo

    from mri.scan_io import ScanReadError, read_scan

    samples = list(dataset.select_fields(["filepath"]))
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        images, readable = [], []
        for sample in chunk:
            try:
                images.append(read_scan(sample.filepath)[0].image)
                readable.append(sample)
            except ScanReadError as error:
                print(f"skipped {error}")
        for sample, image, detections in zip(readable, images, cascade.run(images, conf=conf) if images else []):
            height, width = image.shape[:2]
            scale = np.array([width, height, width, height], np.float32)
            full = dataset[sample.id]
            full["detector"] = fo.Detections(detections=[
                _detection(fo, np.asarray(d.box) / scale, "tumor", confidence=d.det_score) for d in detections])
            full["cascade"] = fo.Detections(detections=[
                _detection(fo, np.asarray(d.box) / scale, d.type, confidence=d.score, det_score=d.det_score,
                           tumor_prob=d.tumor_prob, kept=bool(d.kept)) for d in detections])
            best = max((d.tumor_prob for d in detections), default=0.0)
            p = float(np.clip(best, 1e-4, 1 - 1e-4))
            full["tumor_verdict"] = fo.Classification(label="tumor" if any(d.kept for d in detections) else "no_tumor",
                                                      confidence=p, logits=np.log([1 - p, p]).tolist())
            full.save()
    return len(samples)
