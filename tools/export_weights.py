"""Copy trained checkpoints into weights/ for shipping: the detector as ultralytics saved it (already
stripped of optimizer state, fp16), the classifier as fp16 without optimizer and scheduler state.

    python tools/export_weights.py --detector runs/detect/yolov5n-320/weights/best.pt \
        --classifier runs/classify/lite0-128-hn/best.pt
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import mri.offline  # noqa: F401
from mri import PROJECT_ROOT
from mri.cli import resolve_path, seed_everything


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", required=True)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--out", default=str(PROJECT_ROOT / "weights"))
    parser.add_argument("--seed", type=int, default=0, help="random seed (saved with the arguments)")
    return parser


def main(args) -> int:
    from classify.checkpoint import load_checkpoint, save_checkpoint
    from detect.model import load_detector
    from mri.files import write_yaml

    seed_everything(args.seed)
    out = resolve_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_detector(args.detector)  # refuses anything ultralytics cannot load
    shutil.copyfile(resolve_path(args.detector), out / "detector.pt.tmp")
    (out / "detector.pt.tmp").replace(out / "detector.pt")
    checkpoint = load_checkpoint(resolve_path(args.classifier))
    for key in ("optimizer", "scheduler"):
        checkpoint.pop(key, None)
    checkpoint["source"] = str(Path(args.classifier))
    save_checkpoint(out / "classifier.pt", checkpoint, half=True)
    write_yaml(out / "export_args.yaml", vars(args))  # beside the weights they describe
    for name in ("detector.pt", "classifier.pt"):
        print(f"{out / name}: {(out / name).stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
