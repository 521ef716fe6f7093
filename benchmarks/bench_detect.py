"""Benchmark: our detector training loop vs plain ultralytics on the same data, in one run.

    python benchmarks/bench_detect.py                       # 400 training images, 1 epoch, 320 px
    python benchmarks/bench_detect.py --images 1000 --epochs 2

Trains the same model (yolov5n.yaml) on the same merged, leakage-free images twice: once through
``detect.train``'s trainer (MRI augmentation, all CPU threads) and once as plain
``YOLO('yolov5n.yaml').train(...)`` with ultralytics' defaults. Only the training epochs are timed
(validation is excluded). Writes bench_detect.json and bench_detect.md to a new runs/bench folder.
"""

from __future__ import annotations

import argparse
import sys
import time

import mri.offline  # noqa: F401
from mri.files import write_atomic, write_json, write_yaml
from mri.offline import disable_ultralytics_sync
from mri.registry import load_registry
from mri.reporting import machine, output_folder, utc_now


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400, help="training images used by both runs")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="report folder (default: a new runs/bench/detect)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


class EpochTimer:
    """Callbacks that time training epochs only and count the images they saw."""

    def __init__(self):
        self.seconds, self.images, self._start = 0.0, 0, None

    def start(self, trainer):
        self._start = time.perf_counter()

    def end(self, trainer):
        self.seconds += time.perf_counter() - self._start
        self.images += len(trainer.train_loader.dataset)

    def attach(self, model):
        model.add_callback("on_train_epoch_start", self.start)
        model.add_callback("on_train_epoch_end", self.end)


def run_one(label, trainer_class, overrides, out):
    from ultralytics import YOLO

    timer = EpochTimer()
    model = YOLO("yolov5n.yaml")
    timer.attach(model)
    kwargs = {**overrides, "project": str(out), "name": label}
    if trainer_class is not None:
        kwargs["trainer"] = trainer_class
    model.train(**kwargs)
    return {"seconds": round(timer.seconds, 2), "images": timer.images,
            "images_per_s": round(timer.images / timer.seconds, 2) if timer.seconds else None}


def main(args) -> int:
    import torch

    from detect.engine import MRIDetectionTrainer, train_overrides
    from detect.presets import load_preset
    from mri.merge import merge_datasets

    disable_ultralytics_sync()
    merged = merge_datasets(load_registry())
    fraction = min(1.0, args.images / max(merged.counts["train"], 1))
    out = output_folder(args.out, "detect")
    write_yaml(out / "args.yaml", vars(args))
    common = {"data": str(merged.data_yaml), "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
              "seed": args.seed, "device": args.device, "fraction": fraction, "val": False, "plots": False,
              "single_cls": True, "verbose": False}
    ours_overrides = {**train_overrides(merged.data_yaml, load_preset("mri"), out, name="ours", imgsz=args.imgsz,
                                        epochs=args.epochs, batch=args.batch, seed=args.seed, device=args.device,
                                        workers=2, fraction=fraction), **common}
    ours = run_one("ours", MRIDetectionTrainer, ours_overrides, out)
    plain = run_one("plain", None, common, out)
    report = {
        "date": utc_now(),
        "machine": machine(args.device),
        "torch": torch.__version__,
        "setting": {"model": "yolov5n.yaml", "train_images": round(fraction * merged.counts["train"]),
                    "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch, "device": args.device},
        "ours": ours,
        "plain_ultralytics": plain,
        "speedup": round(ours["images_per_s"] / plain["images_per_s"], 3) if plain["images_per_s"] else None,
    }
    write_json(out / "bench_detect.json", report)
    write_atomic(out / "bench_detect.md", render(report))
    print(render(report))
    print(f"report in {out}")
    return 0


def render(report: dict) -> str:
    setting = report["setting"]
    return "\n".join([
        "# Detector training throughput: ours vs plain ultralytics",
        "",
        f"{report['date']}, {report['machine']}, torch {report['torch']}.",
        f"yolov5n.yaml, {setting['train_images']} training images, {setting['epochs']} epoch(s), "
        f"{setting['imgsz']} px, batch {setting['batch']}, device {setting['device']}; training epochs only.",
        "",
        "| loop | seconds | images | images/s |",
        "|---|---|---|---|",
        f"| ours (`detect.train`) | {report['ours']['seconds']} | {report['ours']['images']} | {report['ours']['images_per_s']} |",
        f"| plain `YOLO('yolov5n.yaml').train()` | {report['plain_ultralytics']['seconds']} | "
        f"{report['plain_ultralytics']['images']} | {report['plain_ultralytics']['images_per_s']} |",
        "",
        f"Ratio (ours / plain): **{report['speedup']}x**",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
