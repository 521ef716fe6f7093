"""The files of a classifier run: folder, checkpoints, final calibration, test metrics and figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classify.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from classify.crop_data import CropSet, class_names
from classify.crops import CropRule
from classify.engine import calibrate_thresholds, metrics_by_dataset
from classify.models import normalisation
from classify.plots import confusion_matrix, plot_confusion, plot_history, save_gallery
from classify.predict import predict_crops
from classify.presets import CropTransform
from mri.cli import resolve_path
from mri.files import new_run_dir, write_json, write_yaml


def prepare_run_dir(args) -> Path:
    run_dir = new_run_dir(resolve_path(args.project), args.name or f"{args.arch}-{args.input_size}")
    write_yaml(run_dir / "args.yaml", vars(args))
    return run_dir


def selection_score(entry: dict) -> float:
    """How best.pt is chosen: validation tumor F1 and type accuracy, equally weighted."""
    val = entry["val"]
    return (val["tumor_f1"] + (val["type_accuracy"] if val["type_accuracy"] is not None else val["tumor_f1"])) / 2


def new_checkpoint(model, args, registry, rule: CropRule, history: list, epoch: int) -> dict:
    """A training checkpoint: no ``thresholds`` until ``finish_run`` calibrates them."""
    mean, std = normalisation(args.arch)
    return {
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "arch": args.arch,
        "classes": class_names(registry),
        "input_size": rule.size,
        "mean": list(mean),
        "std": list(std),
        "crop_rule": rule.as_dict(),
        "epoch": epoch,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "history": history,
    }


def split_report(probabilities: np.ndarray, crops: CropSet, thresholds: dict) -> dict:
    """What a classifier scored on one split's crops, in the one shape ``classify.val`` and a training run's
    metrics.json share: tumor-vs-not and type figures overall and per dataset at the max-F1 threshold (top
    level) and at the shipped default threshold."""
    max_f1 = thresholds.get("max_f1", thresholds["default"])
    return {"n_crops": len(crops), "thresholds": thresholds,
            **metrics_by_dataset(probabilities, crops.labels, crops.datasets, max_f1),
            "at_default_threshold": metrics_by_dataset(probabilities, crops.labels, crops.datasets, thresholds["default"])}


def crop_probabilities(checkpoint: dict, crops: CropSet, device) -> np.ndarray:
    model = model_from_checkpoint(checkpoint, str(device))
    return predict_crops(model, crops.images, checkpoint["mean"], checkpoint["std"])


def evaluate_checkpoint(checkpoint: dict, crops: CropSet, device) -> tuple[dict, np.ndarray]:
    """The checkpoint's ``split_report`` on ``crops``, and its probabilities."""
    probabilities = crop_probabilities(checkpoint, crops, device)
    return split_report(probabilities, crops, checkpoint["thresholds"]), probabilities


def calibrate_checkpoint(checkpoint: dict, val_set: CropSet, device, min_sensitivity: float) -> tuple[dict, dict]:
    """The checkpoint with ``thresholds`` calibrated on the validation crops, and its report on them."""
    probabilities = crop_probabilities(checkpoint, val_set, device)
    calibrated = {**checkpoint, "thresholds": calibrate_thresholds(probabilities, val_set.labels, min_sensitivity)}
    return calibrated, split_report(probabilities, val_set, calibrated["thresholds"])


def update_checkpoints(run_dir: Path, **entries) -> None:
    """Add ``entries`` (calibrated thresholds, a fitted fusion) to the run's best.pt and last.pt."""
    for name in ("best.pt", "last.pt"):
        checkpoint = load_checkpoint(run_dir / name, calibrated=False)
        checkpoint.update(entries)
        save_checkpoint(run_dir / name, checkpoint)


def finish_run(run_dir: Path, args, registry, val_set: CropSet, test_set: CropSet, train_set: CropSet, device, history):
    """Calibrate thresholds on validation, evaluate on test, and write the run's figures and metrics."""
    best, validation = calibrate_checkpoint(load_checkpoint(run_dir / "best.pt", calibrated=False), val_set, device,
                                            args.min_sensitivity)
    thresholds = best["thresholds"]
    update_checkpoints(run_dir, thresholds=thresholds)
    test, test_probabilities = evaluate_checkpoint(best, test_set, device)
    metrics = {"arch": args.arch, "input_size": best["input_size"], "best_epoch": best["epoch"],
               "train_seconds": float(sum(h["seconds"] for h in history)), "n_train_crops": len(train_set),
               "validation": validation, "test": test}
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "history.json", history)
    plot_history(history, run_dir / "curves.png")
    classes = class_names(registry)
    plot_confusion(confusion_matrix(test_probabilities, test_set.labels, classes, thresholds["default"]), classes,
                   run_dir / "confusion.png")
    mean, std = normalisation(args.arch)
    pick = np.random.default_rng(args.seed).choice(len(train_set), min(8, len(train_set)), replace=False)
    save_gallery(train_set.images[np.sort(pick)], CropTransform(args.hyp, mean, std), run_dir / "gallery.png")
    overall = test["overall"]
    print(f"test crops: tumor F1 {overall['tumor_f1']:.3f} (P {overall['tumor_precision']:.3f}, "
          f"R {overall['tumor_recall']:.3f}, AUC {overall['roc_auc'] or 0:.3f}), type accuracy "
          f"{overall['type_accuracy'] or 0:.3f}, macro-F1 {overall['type_macro_f1'] or 0:.3f}; results in {run_dir}")
    return metrics


def add_fusion(run_dir: Path, metrics: dict, val_results: list, val_records: list, device) -> dict:
    """Fit the detector-score/P(tumor) fusion on the validation scans' detector boxes; store it in the
    run's checkpoints and metrics.json."""
    from classify.crops import crops_for_boxes, slice_for_crops
    from classify.fusion import fit_fusion
    from mri.metrics import box_iou
    from mri.scan_io import read_scan

    best = load_checkpoint(run_dir / "best.pt")
    rule, model = CropRule.from_dict(best["crop_rule"]), model_from_checkpoint(best, str(device))
    paths = {record.key: record.path for record in val_records}
    det_scores, tumor_probs, is_tumor = [], [], []
    for result in val_results:
        if not len(result.pred_boxes):
            continue
        crops = crops_for_boxes(slice_for_crops(read_scan(paths[result.key])[0].image, rule), result.pred_boxes, rule)
        tumor_probs.append(1.0 - predict_crops(model, crops, best["mean"], best["std"])[:, 0])
        det_scores.append(result.pred_scores)
        overlap = box_iou(result.pred_boxes, result.gt_boxes)
        is_tumor.append(overlap.max(axis=1) >= 0.5 if overlap.size else np.zeros(len(result.pred_boxes), bool))
    fusion = fit_fusion(np.concatenate(det_scores), np.concatenate(tumor_probs), np.concatenate(is_tumor))
    update_checkpoints(run_dir, fusion=fusion)
    metrics["fusion"] = fusion
    write_json(run_dir / "metrics.json", metrics)
    print(f"fusion fitted on {fusion['n']} validation boxes ({fusion['positives']} tumors): {fusion}")
    return fusion
