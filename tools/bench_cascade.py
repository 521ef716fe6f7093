"""Benchmark: the whole cascade vs the detector alone (plain ultralytics predict), same scans, same size.

    python tools/bench_cascade.py                                        # shipped weights, 200 test scans
    python tools/bench_cascade.py --cls-weights a.pt b.pt c.pt           # one row per classifier (size)

Each configuration runs in its own process (so peak memory is its own): models load once, the scans are
decoded before the clock starts, one warm-up batch, then every scan in batches of --batch. Reports
images/s, the time ratio cascade / detector, peak resident memory, and for each classifier its input
size and its test-crop accuracy (from the metrics.json beside it, when there is one). Writes
bench_cascade.json and .md to a new runs/bench folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import mri.offline  # noqa: F401
from mri import PROJECT_ROOT
from mri.cli import resolve_path
from mri.reporting import fmt, machine, output_folder, utc_now


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--det-weights", default=str(PROJECT_ROOT / "weights" / "detector.pt"))
    parser.add_argument("--cls-weights", nargs="+", default=[str(PROJECT_ROOT / "weights" / "classifier.pt")])
    parser.add_argument("--images", type=int, default=200, help="test scans, spread over the shared datasets")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--conf", type=float, default=0.25, help="detector confidence (the shipped setting)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="report folder (default: a new runs/bench/cascade)")
    parser.add_argument("--worker", choices=["detector", "cascade"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-cls", default=None, help=argparse.SUPPRESS)
    return parser


def benchmark_paths(count: int) -> list[str]:
    from detect.evaluate import load_ground_truth
    from mri.registry import load_registry

    registry = load_registry()
    records = sorted(load_ground_truth(list(registry.datasets), "test", registry), key=lambda r: r.key)
    step = max(1, len(records) // count)
    return [str(r.path) for r in records[::step][:count]]


def worker(args) -> dict:
    """Time one configuration in this process and print its figures as JSON."""
    import resource
    import time

    from mri.scan_io import read_scan

    paths = json.loads(sys.stdin.read())
    images = [read_scan(p)[0].image for p in paths]
    if args.worker == "detector":
        from detect.val import load_detector, trained_image_size
        from mri.offline import restore_torch_threads

        model = load_detector(args.det_weights)
        imgsz = trained_image_size(model)
        restore_torch_threads()
        run = lambda batch: model.predict(batch, imgsz=imgsz, conf=args.conf, device=args.device, verbose=False)  # noqa: E731
    else:
        from cascade.pipeline import Cascade

        cascade = Cascade.load(args.det_weights, args.worker_cls, args.conf, None, args.device)
        run = cascade.run
    run(images[: args.batch])  # warm-up
    start = time.perf_counter()
    for offset in range(0, len(images), args.batch):
        run(images[offset : offset + args.batch])
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": round(seconds, 3), "images": len(images), "images_per_s": round(len(images) / seconds, 2),
            "peak_rss_mb": round(peak_mb, 1)}


def run_worker(args, mode: str, paths: list[str], cls_weights: str | None = None) -> dict:
    command = [sys.executable, __file__, "--worker", mode, "--det-weights", args.det_weights, "--batch", str(args.batch),
               "--conf", str(args.conf), "--device", args.device]
    if cls_weights:
        command += ["--worker-cls", cls_weights]
    result = subprocess.run(command, input=json.dumps(paths), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{mode} benchmark failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def classifier_facts(path: str) -> dict:
    from classify.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    facts = {"weights": path, "arch": checkpoint["arch"], "input_size": checkpoint["input_size"]}
    origin = Path(checkpoint.get("source", path))  # shipped weights remember the run they came from
    metrics_file = Path(path).with_name("metrics.json")
    metrics_file = metrics_file if metrics_file.is_file() else resolve_path(origin).with_name("metrics.json")
    if metrics_file.is_file():
        test = json.loads(metrics_file.read_text())["test"]["overall"]
        facts.update(test_tumor_f1=test["tumor_f1"], test_type_accuracy=test["type_accuracy"])
    return facts


def main(args) -> int:
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    import torch

    from mri.files import write_atomic, write_json, write_yaml

    paths = benchmark_paths(args.images)
    out = output_folder(args.out, "cascade")
    write_yaml(out / "args.yaml", vars(args))
    detector = run_worker(args, "detector", paths)
    rows = []
    for cls_weights in args.cls_weights:
        figures = run_worker(args, "cascade", paths, cls_weights)
        rows.append({**classifier_facts(cls_weights), **figures,
                     "time_ratio": round(figures["seconds"] / detector["seconds"], 3)})
    report = {"date": utc_now(), "machine": machine(args.device),
              "torch": torch.__version__, "det_weights": args.det_weights, "n_images": len(paths), "batch": args.batch,
              "conf": args.conf, "detector_alone": detector, "cascade": rows}
    write_json(out / "bench_cascade.json", report)
    write_atomic(out / "bench_cascade.md", render(report))
    print(render(report))
    print(f"report in {out}")
    return 0


def render(report: dict) -> str:
    d = report["detector_alone"]
    lines = [
        "# Inference throughput: cascade vs detector alone",
        "",
        f"{report['date']}, {report['machine']}, torch {report['torch']}. {report['n_images']} leakage-free test scans "
        f"from all shared datasets, batch {report['batch']}, detector confidence {report['conf']}; models loaded once, "
        "scans decoded before timing, one warm-up batch.",
        "",
        "| configuration | classifier input | images/s | time vs detector | peak memory (MB) | test-crop tumor F1 | type accuracy |",
        "|---|---|---|---|---|---|---|",
        f"| detector alone (ultralytics predict) | - | {d['images_per_s']} | 1.00x | {d['peak_rss_mb']} | - | - |",
    ]
    for row in report["cascade"]:
        lines.append(f"| cascade, {row['arch']} | {row['input_size']} px | {row['images_per_s']} | {row['time_ratio']:.2f}x | "
                     f"{row['peak_rss_mb']} | {fmt(row.get('test_tumor_f1'))} | {fmt(row.get('test_type_accuracy'))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
