"""Export both heads for ONNX Runtime or OpenVINO: the cascade then runs without PyTorch models.

    python tools/export.py --format onnx --out runs/export/onnx          # shipped weights in weights/
    python tools/export.py --format openvino --out runs/export/openvino
    python tools/export.py --format onnx --det-weights runs/detect/yolov5n-320/weights/best.pt \\
        --cls-weights runs/classify/lite0-96/best.pt --out runs/export/mine

Writes, to DIR (a sibling DIR-2... if DIR already holds files): for onnx, detector.onnx (ultralytics' own
export, dynamic batch and size, simplified) and classifier.onnx (torch.onnx.export, dynamic batch, softmax
included); for openvino, detector_openvino_model/ and classifier_openvino_model/ (the same graphs read by
OpenVINO and saved as IR, fp32). The classifier carries its checkpoint's contract (classes, input size,
mean/std, crop rule, thresholds and every other non-weight key) as JSON in its metadata. Use them with
--det-weights/--cls-weights of tools/infer.py, tools/evaluate.py and benchmarks/bench_cascade.py.
"""

from __future__ import annotations

import argparse
import sys

import mri.offline  # noqa: F401  (offline environment before any heavy import)
from cascade.export import FORMATS, export_classifier, export_detector
from mri import PROJECT_ROOT


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--det-weights", default=str(PROJECT_ROOT / "weights" / "detector.pt"))
    parser.add_argument("--cls-weights", default=str(PROJECT_ROOT / "weights" / "classifier.pt"))
    parser.add_argument("--imgsz", type=int, default=None, help="detector input size (default: its training size)")
    parser.add_argument("--out", required=True, help="output folder (a new sibling is made if it holds files)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (saved with the arguments)")
    return parser


def main(args) -> int:
    from cascade.backends import ExportedWeightsError
    from classify.checkpoint import CheckpointError
    from mri.cli import resolve_path, seed_everything
    from mri.files import output_dir, write_yaml

    seed_everything(args.seed)

    out = output_dir(resolve_path(args.out))
    try:
        detector = export_detector(args.det_weights, out, args.format, args.imgsz)
        classifier = export_classifier(args.cls_weights, out, args.format)
    except (FileNotFoundError, ValueError, CheckpointError, ExportedWeightsError) as error:
        if not any(out.iterdir()):
            out.rmdir()  # nothing was exported: leave no empty folder behind
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_yaml(out / "args.yaml", vars(args))
    for path in (detector, classifier):
        size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
        print(f"{path}: {size / 1e6:.1f} MB")
    print(f"use them with: python tools/infer.py --source demo/scans --det-weights {detector} --cls-weights {classifier}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
