"""Does the classifier pay? The detector alone vs the cascade, on the same images.

    python tools/evaluate.py --data rf_mri4 --split test --out runs/eval/rf_mri4
    python tools/evaluate.py --data /data/other/data.yaml --split test --out runs/eval/other
    python tools/evaluate.py --data /data/export/test/_annotations.coco.json --out runs/eval/export

D is a registry name (or several), a YOLO data.yaml or a COCO json; foreign class names are matched to
ours by name, whatever their case or order. Writes DIR/metrics.json (top-level ``detector`` and
``cascade``, each with map50, map50_95, typed_map50, sens_at_fp {"0.5","1","2"}, fp_per_image_at_sens90,
type_accuracy, image_f1; plus n_images, seconds and the same per source dataset) and DIR/report.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import mri.offline  # noqa: F401
from mri import PROJECT_ROOT

EVAL_CONF = 0.005  # low, so the curves (mAP, FROC) see nearly every box
TOP_K = 20  # boxes per slice the classifier scores, best detector scores first; 0 = all (README: mAP moves < 0.001)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, help="registry name(s), a data.yaml or a COCO json")
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                        help="registry split (leakage-free); all: every image, e.g. of a source held out of training")
    parser.add_argument("--out", required=True, help="output folder (a new one is made if it exists)")
    parser.add_argument("--det-weights", default=str(PROJECT_ROOT / "weights" / "detector.pt"))
    parser.add_argument("--cls-weights", default=str(PROJECT_ROOT / "weights" / "classifier.pt"))
    parser.add_argument("--conf", type=float, default=0.25, help="detector operating point for image-level F1")
    parser.add_argument("--cls-threshold", type=float, default=None, help="default: the checkpoint's")
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--registry", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=TOP_K,
                        help="classify only the k highest-scoring detector boxes of each slice (0: every box)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run_both(cascade, records, batch: int, conf: float, top_k: int | None = None):
    """Detector-only and cascade ImageResults for every record, from one detector pass.

    Curves (mAP, FROC) rank every box: the detector by its score, the cascade by ``Detection.score`` (the
    classifier checkpoint's fitted fusion of both heads, see ``classify.fusion``). The operating point is what each outputs at its shipped
    settings: detector boxes at ``conf``; cascade boxes at ``conf`` that the classifier keeps.
    ``top_k``: the classifier scores only each slice's k best detector boxes (and every box at ``conf``, so
    the operating point is exact); a box it did not score ranks after all scored boxes in the cascade's
    curves. Scans are decoded in a thread meanwhile.
    """
    from tqdm import tqdm

    from cascade.pipeline import prefetched
    from detect.evaluate import gt_in_pixels
    from mri.scan_io import read_scan

    detector, cascaded, detector_shown, cascade_shown = [], [], [], []
    chunks = [records[start : start + batch] for start in range(0, len(records), batch)]
    decode = lambda chunk: [read_scan(r.path)[0].image for r in chunk]  # noqa: E731
    for chunk, images in tqdm(prefetched(chunks, decode), total=len(chunks), desc="evaluate", unit="batch"):
        results = cascade.run(images, conf=EVAL_CONF, top_k=top_k or None, always_above=conf)
        for record, image, detections in zip(chunk, images, results):
            height, width = image.shape[:2]
            common = dict(key=record.key, dataset=record.dataset, width=width, height=height,
                          gt_boxes=gt_in_pixels(record, width, height), gt_classes=list(record.classes))
            shown = [d for d in detections if d.det_score >= conf]
            detector.append(as_result(common, detections, lambda d: d.det_score, typed=False))
            cascaded.append(as_result(common, detections, cascade_rank, typed=True))
            detector_shown.append(as_result(common, shown, lambda d: d.det_score, typed=False))
            cascade_shown.append(as_result(common, [d for d in shown if d.kept], lambda d: d.score, typed=True))
    return detector, cascaded, detector_shown, cascade_shown


def cascade_rank(detection) -> float:
    """The cascade's ranking score; 0 for a box the classifier did not score (``--top-k``)."""
    return detection.score if detection.classified else 0.0


def as_result(common: dict, detections, score, typed: bool):
    import numpy as np

    from mri.metrics import ImageResult

    return ImageResult(**common, pred_boxes=np.array([d.box for d in detections], np.float32).reshape(-1, 4),
                       pred_scores=np.array([score(d) for d in detections], np.float32),
                       pred_classes=[d.type if typed else "tumor" for d in detections])


def main(args) -> int:
    from cascade.evaluation import compare
    from cascade.pipeline import Cascade, WeightsError
    from cascade.report_md import evaluation_markdown
    from detect.evaluate import load_ground_truth
    from mri.cli import seed_everything
    from mri.cli import DeviceError
    from mri.files import OutputError, write_atomic, write_json, write_yaml
    from mri.registry import DatasetError, load_registry
    from mri.reporting import output_folder

    seed_everything(args.seed)
    try:
        cascade = Cascade.load(args.det_weights, args.cls_weights, 0.005, args.imgsz, args.device, args.cls_threshold)
        registry = load_registry(args.registry)
        records = load_ground_truth(args.data, args.split, registry)
        out = output_folder(args.out, "evaluate")
    except (WeightsError, DatasetError, DeviceError, OutputError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_yaml(out / "args.yaml", vars(args))
    start = time.perf_counter()
    metrics = compare(*run_both(cascade, records, args.batch, args.conf, args.top_k), cascade.types)
    metrics.update(n_images=len(records), seconds=round(time.perf_counter() - start, 2), data=args.data, split=args.split,
                   settings={"det_weights": str(args.det_weights), "cls_weights": str(args.cls_weights),
                             "imgsz": cascade.imgsz, "cls_threshold": cascade.threshold, "det_conf": args.conf,
                             "top_k": args.top_k or None, "threads": cascade.threads()})
    write_json(out / "metrics.json", metrics)
    report = evaluation_markdown(metrics)
    write_atomic(out / "report.md", report)
    print(report)
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
