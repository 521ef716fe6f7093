"""Does the classifier pay? The detector alone vs the cascade, on the same images.

    python tools/evaluate.py --data rf_mri4 --split test --out runs/eval/rf_mri4
    python tools/evaluate.py --data /data/other/data.yaml --split test --out runs/eval/other
    python tools/evaluate.py --data /data/export/test/_annotations.coco.json --out runs/eval/export

D is a registry name (or several), a YOLO data.yaml or a COCO json; foreign class names are matched to
ours by name, whatever their case or order. Writes DIR/metrics.json (top-level ``detector`` and
``cascade``, each with map50, map50_ci95 (a 95% bootstrap interval, patient groups drawn), map50_95, typed_map50,
sens_at_fp {"0.5","1","2"}, fp_per_image_at_sens90, type_accuracy, image_f1, operating_point, by_type and, where
some true box lies inside another, by_nesting; plus n_images, seconds, the same per source dataset and
by_resolution) and DIR/report.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import mri.offline  # noqa: F401
from mri import PROJECT_ROOT

TOP_K = 20  # boxes per slice the classifier scores, best detector scores first; 0 = all (README: mAP moves < 0.001)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, help="registry name(s), a data.yaml or a COCO json")
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                        help="registry split (leakage-free); all: every image, e.g. of a source held out of training")
    parser.add_argument("--out", required=True, help="output folder (a new one is made if it exists)")
    parser.add_argument("--det-weights", default=str(PROJECT_ROOT / "weights" / "detector.pt"))
    parser.add_argument("--cls-weights", default=str(PROJECT_ROOT / "weights" / "classifier.pt"))
    parser.add_argument("--baseline-det-weights", default=None,
                        help="also score this detector on the same images, with the same settings, and report how much "
                             "better or worse the one evaluated is (mAP50 difference, paired 95%% bootstrap interval)")
    parser.add_argument("--baseline-cls-weights", default=None,
                        help="the baseline's classifier (default: --cls-weights); alone, it compares two classifiers "
                             "behind --det-weights")
    parser.add_argument("--conf", type=float, default=0.25, help="detector operating point for image-level F1")
    parser.add_argument("--cls-threshold", type=float, default=None, help="default: the checkpoint's")
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--registry", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="detector test-time augmentation (ultralytics': as is, 0.83x flipped, 0.67x), about 2x "
                             "the detector's time; default: on for PyTorch detector weights, which support it (README)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=TOP_K,
                        help="classify only the k highest-scoring detector boxes of each slice (0: every box)")
    parser.add_argument("--no-fusion", dest="fusion", action="store_false",
                        help="rank cascade boxes by the geometric mean even where the classifier carries a fitted fusion")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(args) -> int:
    from cascade.evaluation import compare, load_for_evaluation, run_both, scored_settings, versus_baseline
    from cascade.pipeline import WeightsError
    from cascade.report_md import evaluation_markdown
    from detect.evaluate import load_ground_truth
    from mri.cli import DeviceError, seed_everything
    from mri.files import OutputError, write_atomic, write_json, write_yaml
    from mri.registry import DatasetError, load_registry
    from mri.reporting import output_folder

    seed_everything(args.seed)
    try:
        settings = dict(imgsz=args.imgsz, device=args.device, threshold=args.cls_threshold, fusion=args.fusion)
        cascade = load_for_evaluation(args.det_weights, args.cls_weights, tta=args.tta, **settings)
        args.tta = cascade.tta  # saved resolved
        baseline = None
        if args.baseline_det_weights or args.baseline_cls_weights:
            args.baseline_det_weights = args.baseline_det_weights or args.det_weights
            args.baseline_cls_weights = args.baseline_cls_weights or args.cls_weights
            baseline = load_for_evaluation(args.baseline_det_weights, args.baseline_cls_weights, tta=args.tta, **settings)
        registry = load_registry(args.registry)
        records = load_ground_truth(args.data, args.split, registry)
        out = output_folder(args.out, "evaluate")
    except (WeightsError, DatasetError, DeviceError, OutputError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_yaml(out / "args.yaml", vars(args))
    start = time.perf_counter()
    ours = run_both(cascade, records, args.batch, args.conf, args.top_k)
    metrics = compare(*ours, cascade.types)
    if baseline is not None:
        metrics["versus_baseline"] = {
            "settings": scored_settings(baseline, args.baseline_det_weights, args.baseline_cls_weights, args.conf,
                                        args.top_k),
            **versus_baseline(ours, run_both(baseline, records, args.batch, args.conf, args.top_k))}
    metrics.update(n_images=len(records), seconds=round(time.perf_counter() - start, 2), data=args.data, split=args.split,
                   settings=scored_settings(cascade, args.det_weights, args.cls_weights, args.conf, args.top_k))
    write_json(out / "metrics.json", metrics)
    report = evaluation_markdown(metrics)
    write_atomic(out / "report.md", report)
    print(report)
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
