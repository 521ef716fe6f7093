"""Evaluate a detector on a registry split or on any YOLO data.yaml / COCO json, with COCO mAP and FROC.

    python -m detect.val --weights weights/detector.pt                         # all registry test splits
    python -m detect.val --weights runs/detect/yolov5n-320/weights/best.pt --data rf_mri4 --split val
    python -m detect.val --weights weights/detector.pt --data /data/other/data.yaml
    python -m detect.val --weights weights/detector.pt --data /data/export/test/_annotations.coco.json

Writes metrics.json (COCO mAP50 and mAP50-95 from pycocotools beside ultralytics' figures on the same
predictions, precision/recall/F1 at --conf, sensitivity at 0.125-8 false positives per image, false
positives per image at 0.90 sensitivity; overall and per source dataset), pr_curve.png and froc.png to a
new folder under runs/detect-val/.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import warnings
from pathlib import Path

import mri.offline  # noqa: F401
from mri.cli import resolve_path, seed_everything
from mri.files import OutputError, new_run_dir, output_dir, write_json, write_yaml
from mri.offline import RUNS_DIR, keep_torch_threads
from mri.registry import DatasetError, load_registry
from mri.scan_io import first_line


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="detector weights (.pt)")
    parser.add_argument("--data", nargs="+", default=None,
                        help="registry dataset names (default: all), or one data.yaml / COCO json path")
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                        help="registry split (leakage-free); all: every image, e.g. of a source held out of training")
    parser.add_argument("--registry", default=None, help="datasets.yaml to read (default: the project's)")
    parser.add_argument("--no-leakage-free", dest="leakage_free", action="store_false",
                        help="use the sources' own splits instead of the leakage-free assignment")
    parser.add_argument("--imgsz", type=int, default=None, help="inference size (default: the training size)")
    parser.add_argument("--conf", type=float, default=0.25, help="confidence for precision/recall/F1")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="output folder (default: a new runs/detect-val/<name>; a new sibling if it holds files)")
    parser.add_argument("--name", default="val")
    return parser


def load_detector(weights: str | Path):
    """An ultralytics detector from a local file; a clear error instead of a download attempt.

    The file is unpickled with ``weights_only=True`` against ultralytics' allow-list of model classes, so
    a crafted .pt cannot run code: it fails with the same one-line "invalid weights" error as a corrupt one.
    """
    path = resolve_path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{weights}: detector weights not found (train one with `python -m detect.train`)")
    from ultralytics import YOLO

    try:
        with ultralytics_safe_loading(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's notes on odd pickles; the error says enough
            model = YOLO(str(path), task="detect")
    except Exception as error:  # ultralytics raises many types for a bad checkpoint
        detail = first_line(error).replace("ERROR ❌️", "").replace(str(path), "the file").strip()
        detail = re.sub(r"\s*(Recommended fixes|Use an official).*$", "", detail)  # advice that needs the network
        raise ValueError(f"{path}: invalid weights, not a valid ultralytics detector checkpoint "
                         f"({error.__class__.__name__}: {detail})") from None
    keep_torch_threads(model)
    return model


@contextlib.contextmanager
def ultralytics_safe_loading():
    """Switch on ultralytics' restricted checkpoint loading (its ``ULTRALYTICS_SAFE_LOAD``) for a block.

    Restricted loading unpickles with ``torch.load(weights_only=True)`` and reconstructs only ultralytics'
    and torch's model classes. Without it (an older ultralytics or torch) nothing is loaded at all.
    """
    import torch
    from ultralytics.nn import tasks

    if not hasattr(tasks, "SAFE_LOAD") or not hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        raise RuntimeError("this ultralytics/torch cannot load checkpoints safely (needs ultralytics 8.4 with "
                           "ULTRALYTICS_SAFE_LOAD and torch 2.6 or newer)")
    previous = tasks.SAFE_LOAD
    tasks.SAFE_LOAD = True
    try:
        yield
    finally:
        tasks.SAFE_LOAD = previous


def trained_image_size(model, default: int = 640) -> int:
    args = getattr(model, "overrides", None) or {}
    return int(args.get("imgsz") or default)


def main(args) -> int:
    from detect.evaluate import evaluate_detector, load_ground_truth, plot_curves

    seed_everything(args.seed)
    try:
        model = load_detector(args.weights)
        registry = load_registry(args.registry)
        records = load_ground_truth(args.data or list(registry.datasets), args.split, registry, args.leakage_free)
    except (DatasetError, FileNotFoundError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    imgsz = args.imgsz or trained_image_size(model)
    try:  # never into an earlier result: a non-empty --out gets a new sibling folder
        out = output_dir(resolve_path(args.out)) if args.out else new_run_dir(RUNS_DIR / "detect-val", args.name)
    except OutputError as error:
        print(error, file=sys.stderr)
        return 2
    write_yaml(out / "args.yaml", {**vars(args), "imgsz": imgsz})
    metrics, results = evaluate_detector(model, records, imgsz, args.conf, args.device)
    metrics.update({"weights": str(resolve_path(args.weights)), "split": args.split, "imgsz": imgsz})
    write_json(out / "metrics.json", metrics)
    plot_curves(results, out)
    overall = metrics["overall"]
    print(f"{len(results)} images: COCO mAP50 {overall['coco']['map50']:.3f}, mAP50-95 {overall['coco']['map50_95']:.3f} "
          f"(ultralytics {overall['ultralytics']['map50']:.3f} / {overall['ultralytics']['map50_95']:.3f}); "
          f"P {overall['precision']:.3f} R {overall['recall']:.3f} at conf {args.conf}; "
          f"sensitivity at 1 FP/image {overall['sens_at_fp']['1']:.3f}")
    for dataset, figures in metrics["per_dataset"].items():
        print(f"  {dataset}: mAP50 {figures['coco']['map50']:.3f}, mAP50-95 {figures['coco']['map50_95']:.3f}, "
              f"sens@1FP {figures['sens_at_fp']['1']:.3f} ({figures['n_images']} images)")
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
