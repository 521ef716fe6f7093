"""Evaluate a detector on a registry split or on any YOLO data.yaml / COCO json, with COCO mAP and FROC.

    python -m detect.val --weights weights/detector.pt                         # all registry test splits
    python -m detect.val --weights runs/detect/yolov5n-320/weights/best.pt --data rf_mri4 --split val
    python -m detect.val --weights weights/detector.pt --data /data/other/data.yaml
    python -m detect.val --weights weights/detector.pt --data /data/export/test/_annotations.coco.json

Writes metrics.json (COCO mAP50 and mAP50-95 from pycocotools beside ultralytics' figures on the same
predictions, precision/recall/F1 at --conf, sensitivity at 0.125-8 false positives per image, false
positives per image at 0.90 sensitivity; overall, per source dataset and by the slices' native longer side:
under 256, 256-511, 512 px and up, as the files read are: a downscaled copy of the data, e.g. one made by
tools/compact_data.py, is binned by its own sizes), pr_curve.png and froc.png to a new folder under
runs/detect-val/.
"""

from __future__ import annotations

import argparse
import sys

import mri.offline  # noqa: F401
from detect.model import load_detector, trained_image_size
from mri.cli import check_device, resolve_path, seed_everything
from mri.files import OutputError, new_run_dir, output_dir, write_json, write_yaml
from mri.offline import RUNS_DIR
from mri.registry import DatasetError, load_registry
from mri.reporting import fmt_interval


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


def main(args) -> int:
    from detect.evaluate import evaluate_detector, load_ground_truth, plot_curves

    seed_everything(args.seed)
    try:
        check_device(args.device)  # a DeviceError is a ValueError: one line
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
        print(_summary(dataset, figures))
    for label, figures in metrics["by_resolution"].items():
        print(_summary(f"slices {label}", figures))
    print(f"results in {out}")
    return 0


def _summary(name: str, figures: dict) -> str:
    return (f"  {name}: mAP50 {figures['coco']['map50']:.3f} (95% interval {fmt_interval(figures['map50_ci95'])}), "
            f"mAP50-95 {figures['coco']['map50_95']:.3f}, sens@1FP {figures['sens_at_fp']['1']:.3f} "
            f"({figures['n_images']} images, {figures['n_boxes']} boxes)")


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
