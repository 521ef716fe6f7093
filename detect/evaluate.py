"""Evaluating a detector: ground truth from the registry or any YOLO/COCO dataset, predictions from
ultralytics, metrics from ``mri.metrics`` overall and per source dataset, PR and FROC plots."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mri.metrics import ImageResult, by_resolution, detection_metrics, froc, overall_and_per_dataset, ranked_hits
from mri.registry import DatasetError, LabeledImage, Registry, dataset_from_path, read_dataset
from mri.splits import registry_records


def load_ground_truth(data: list[str], split: str, registry: Registry, leakage_free: bool = True) -> list[LabeledImage]:
    """Records of ``split`` from registry dataset names, or from one YOLO data.yaml / COCO json path.

    Registry datasets use the leakage-free split assignment (the split the detector was *not* trained on);
    ``split="all"`` takes every image (of a source held out of training).
    """
    if len(data) == 1 and Path(data[0]).suffix in (".yaml", ".yml", ".json"):
        spec = dataset_from_path(data[0], registry, split)
        return read_dataset(spec, registry, split)
    records, _ = registry_records(registry, data, leakage_free)
    chosen = records if split == "all" else [r for r in records if r.split == split]
    if not chosen:
        raise DatasetError([f"no images in split '{split}' of {', '.join(data)}"])
    return chosen


def gt_in_pixels(record: LabeledImage, width: int, height: int) -> np.ndarray:
    return record.boxes * np.array([width, height, width, height], np.float32)


def predict(model, records: list[LabeledImage], imgsz: int, conf: float, device: str, batch: int = 16,
            progress: bool = True) -> list[ImageResult]:
    """Run an ultralytics detector over the records' images (class-agnostic results, boxes in pixels)."""
    from tqdm import tqdm

    from detect.model import predict_boxes
    from mri.scan_io import read_scan

    results = []
    bar = tqdm(total=len(records), desc="predict", unit="img", disable=not progress)
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        images = [read_scan(r.path)[0].image for r in chunk]
        for record, image, (boxes, scores) in zip(chunk, images, predict_boxes(model, images, imgsz, conf, device)):
            height, width = image.shape[:2]
            results.append(ImageResult(
                key=record.key, dataset=record.dataset, width=width, height=height, unit=record.resampling_unit,
                gt_boxes=gt_in_pixels(record, width, height), gt_classes=list(record.classes),
                pred_boxes=boxes, pred_scores=scores, pred_classes=["tumor"] * len(boxes),
            ))
        bar.update(len(chunk))
    bar.close()
    return results


def evaluate_results(results: list[ImageResult], conf: float) -> dict:
    """Metrics for all images, for each source dataset, and by the slices' native resolution."""
    metrics = overall_and_per_dataset(lambda group: detection_metrics(group, conf), results,
                                      [r.dataset for r in results])
    metrics["by_resolution"] = by_resolution(lambda picked: detection_metrics([results[i] for i in picked], conf),
                                             results)
    return metrics


def plot_curves(results: list[ImageResult], out: Path) -> list[Path]:
    """PR curve and FROC curve (overall and per dataset) as PNGs in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {"all": results, **{d: [r for r in results if r.dataset == d] for d in sorted({r.dataset for r in results})}}
    fig_pr, ax_pr = plt.subplots(figsize=(5, 4))
    fig_froc, ax_froc = plt.subplots(figsize=(5, 4))
    for name, group in groups.items():
        _, hits, n_gt = ranked_hits(group)
        if n_gt == 0 or not len(hits):
            continue
        tp = np.cumsum(hits)
        ax_pr.plot(tp / n_gt, tp / np.arange(1, len(hits) + 1), label=name)
        curve = froc(group)["curve"]
        ax_froc.plot(curve["fp_per_image"], curve["sensitivity"], label=name)
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall (IoU 0.5)", xlim=(0, 1), ylim=(0, 1.02))
    ax_froc.set(xscale="log", xlim=(0.1, 10), ylim=(0, 1.02), xlabel="false positives per image",
                ylabel="sensitivity", title="FROC (IoU 0.5)")
    paths = []
    for fig, ax, name in ((fig_pr, ax_pr, "pr_curve.png"), (fig_froc, ax_froc, "froc.png")):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        paths.append(out / name)
    return paths


def evaluate_detector(model, records: list[LabeledImage], imgsz: int, conf: float, device: str,
                      eval_conf: float = 0.001) -> tuple[dict, list[ImageResult]]:
    """Predict at ``eval_conf`` (low, for mAP and FROC) and report precision/recall at ``conf``."""
    start = time.perf_counter()
    results = predict(model, records, imgsz, eval_conf, device)
    metrics = evaluate_results(results, conf)
    metrics["seconds"] = time.perf_counter() - start
    return metrics, results
