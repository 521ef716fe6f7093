"""Benchmark: the whole cascade vs the detector alone, in PyTorch, ONNX Runtime and OpenVINO, same scans.

    python benchmarks/bench_cascade.py                                        # shipped weights, 200 test scans
    python benchmarks/bench_cascade.py --cls-weights a.pt b.pt c.pt           # one row per classifier (size)
    python benchmarks/bench_cascade.py --backends pytorch onnx --images 64    # fewer runtimes, fewer scans

Each configuration runs in its own process (so peak memory is its own): models load once, the scans are
decoded before the clock starts, one warm-up batch, then --passes timed passes over every scan in batches
of --batch, of which the median counts (other work on a shared machine disturbs some passes). The anchor is
plain ultralytics, ``YOLO(weights).predict`` as a user calls it (with the threads ultralytics picks); the
other arms use the cascade's thread policy (``cascade.backends.keep_detector_threads``). For ONNX Runtime
and OpenVINO the weights are first exported with tools/export.py into the report folder. Reports images/s,
the time ratio cascade / detector of the same runtime, speed against the anchor, the threads each arm used,
peak resident memory, the load average during the run, and for each PyTorch classifier its input size and
test-crop accuracy (from the metrics.json beside it, when there is one). Writes bench_cascade.json and .md
to a new runs/bench folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import mri.offline  # noqa: F401
from mri import PROJECT_ROOT
from mri.cli import resolve_path
from mri.reporting import fmt, machine, output_folder, utc_now

BACKENDS = ("pytorch", "onnx", "openvino")
BACKEND_NAMES = {"pytorch": "PyTorch", "onnx": "ONNX Runtime", "openvino": "OpenVINO"}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--det-weights", default=str(PROJECT_ROOT / "weights" / "detector.pt"))
    parser.add_argument("--cls-weights", nargs="+", default=[str(PROJECT_ROOT / "weights" / "classifier.pt")])
    parser.add_argument("--images", type=int, default=200, help="test scans, spread over the shared datasets")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the scans; the median counts")
    parser.add_argument("--conf", type=float, default=0.25, help="detector confidence (the shipped setting)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tta", action="store_true",
                        help="time every arm with the detector's test-time augmentation (PyTorch backend only)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS),
                        help="runtimes to compare (onnx and openvino export the weights first)")
    parser.add_argument("--out", default=None, help="report folder (default: a new runs/bench/cascade)")
    parser.add_argument("--worker", choices=["plain", "detector", "cascade"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-cls", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help="random seed (saved with the arguments)")
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

    import torch

    from mri.scan_io import read_scan

    paths = json.loads(sys.stdin.read())
    images = [read_scan(p)[0].image for p in paths]
    if args.worker == "cascade":
        from cascade.pipeline import Cascade

        cascade = Cascade.load(args.det_weights, args.worker_cls, args.conf, None, args.device, tta=args.tta)
        run, threads = cascade.run, cascade.threads
    else:
        from cascade.backends import detector_image_size, detector_threads, keep_detector_threads, load_detector

        model = load_detector(args.det_weights)
        imgsz = detector_image_size(model, args.det_weights)
        if args.worker == "detector":
            keep_detector_threads(model, args.det_weights)  # as the cascade does
        run = lambda batch: model.predict(batch, imgsz=imgsz, conf=args.conf, device=args.device, verbose=False,  # noqa: E731
                                          augment=args.tta)
        threads = lambda: {"detector": detector_threads(model), "torch": torch.get_num_threads()}  # noqa: E731
    run(images[: args.batch])  # warm-up
    passes = []
    for _ in range(args.passes):
        start = time.perf_counter()
        for offset in range(0, len(images), args.batch):
            run(images[offset : offset + args.batch])
        passes.append(time.perf_counter() - start)
    seconds = sorted(passes)[len(passes) // 2]  # the median pass: robust to other work on a shared machine
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": round(seconds, 3), "images": len(images), "images_per_s": round(len(images) / seconds, 2),
            "pass_seconds": [round(p, 3) for p in passes], "peak_rss_mb": round(peak_mb, 1), "threads": threads()}


def run_worker(args, mode: str, paths: list[str], cls_weights: str | None = None, det_weights: str | None = None) -> dict:
    command = [sys.executable, __file__, "--worker", mode, "--det-weights", det_weights or args.det_weights,
               "--batch", str(args.batch), "--passes", str(args.passes), "--conf", str(args.conf), "--device", args.device]
    command += ["--tta"] if args.tta else []
    if cls_weights:
        command += ["--worker-cls", cls_weights]
    result = subprocess.run(command, input=json.dumps(paths), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{mode} benchmark failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def exported_weights(args, backend: str, out: Path) -> tuple[str, str]:
    """Detector and classifier weights for ``backend``: the given ones, or their export into ``out``."""
    if backend == "pytorch":
        return args.det_weights, args.cls_weights[0]
    from cascade.export import export_classifier, export_detector

    folder = out / f"export-{backend}"
    folder.mkdir(parents=True, exist_ok=True)
    return (str(export_detector(args.det_weights, folder, backend)),
            str(export_classifier(args.cls_weights[0], folder, backend)))


def compare_backends(args, paths: list[str], out: Path) -> tuple[dict, list[dict]]:
    """The plain-ultralytics anchor, then detector alone and cascade for each runtime, one process each."""
    plain = run_worker(args, "plain", paths)
    rows = []
    for backend in (["pytorch"] if args.tta else args.backends):  # exported detectors run single-scale only
        det, cls = exported_weights(args, backend, out)
        detector = run_worker(args, "detector", paths, det_weights=det)
        cascade = run_worker(args, "cascade", paths, cls, det_weights=det)
        rows.append({"backend": backend, "det_weights": det, "cls_weights": cls, "detector": detector, "cascade": cascade,
                     "time_ratio": round(cascade["seconds"] / detector["seconds"], 3)})
    return plain, rows


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

    from mri.cli import seed_everything
    from mri.files import write_atomic, write_json, write_yaml

    seed_everything(args.seed)

    paths = benchmark_paths(args.images)
    out = output_folder(args.out, "cascade")
    write_yaml(out / "args.yaml", vars(args))
    load_before = os.getloadavg()[0]
    plain, backends = compare_backends(args, paths, out)
    detector = next((row["detector"] for row in backends if row["backend"] == "pytorch"), None)
    detector = detector or run_worker(args, "detector", paths)
    rows = []
    for cls_weights in args.cls_weights:
        known = next((row["cascade"] for row in backends if row["backend"] == "pytorch" and row["cls_weights"] == cls_weights), None)
        figures = known or run_worker(args, "cascade", paths, cls_weights)
        rows.append({**classifier_facts(cls_weights), **figures,
                     "time_ratio": round(figures["seconds"] / detector["seconds"], 3)})
    report = {"date": utc_now(), "machine": machine(args.device),
              "torch": torch.__version__, "det_weights": args.det_weights, "n_images": len(paths), "batch": args.batch,
              "conf": args.conf, "tta": args.tta, "passes": args.passes, "detector_alone": detector, "cascade": rows, "plain_ultralytics": plain,
              "backends": backends, "versions": runtime_versions(),
              "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    write_json(out / "bench_cascade.json", report)
    write_atomic(out / "bench_cascade.md", render(report))
    print(render(report))
    print(f"report in {out}")
    return 0


def runtime_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("torch", "ultralytics", "onnxruntime", "openvino"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions


def render(report: dict) -> str:
    d = report["detector_alone"]
    lines = [
        "# Inference throughput: cascade vs detector alone",
        "",
        f"{report['date']}, {report['machine']}, torch {report['torch']}. {report['n_images']} leakage-free test scans "
        f"from all shared datasets, batch {report['batch']}, detector confidence {report['conf']}"
        f"{', test-time augmentation' if report.get('tta') else ', single-scale detector'}; models loaded once, "
        f"scans decoded before timing, one warm-up batch, median of {report.get('passes', 1)} timed passes.",
        "",
    ]
    if report.get("backends"):
        lines += [*backend_lines(report), ""]
    lines += [
        "| configuration | classifier input | images/s | time vs detector | peak memory (MB) | test-crop tumor F1 | type accuracy |",
        "|---|---|---|---|---|---|---|",
        f"| detector alone (ultralytics predict) | - | {d['images_per_s']} | 1.00x | {d['peak_rss_mb']} | - | - |",
    ]
    for row in report["cascade"]:
        lines.append(f"| cascade, {row['arch']} | {row['input_size']} px | {row['images_per_s']} | {row['time_ratio']:.2f}x | "
                     f"{row['peak_rss_mb']} | {fmt(row.get('test_tumor_f1'))} | {fmt(row.get('test_type_accuracy'))} |")
    return "\n".join(lines) + "\n"


def backend_lines(report: dict) -> list[str]:
    """The runtimes table: images/s of detector alone and cascade per runtime, against plain ultralytics."""
    plain = report["plain_ultralytics"]
    versions = report.get("versions", {})
    lines = [
        "Runtimes side by side (same scans, one process per row; threads: detector runtime / classifier runtime). "
        f"ultralytics {versions.get('ultralytics')}, onnxruntime {versions.get('onnxruntime')}, "
        f"OpenVINO {versions.get('openvino')}. Speed-up: images/s against the plain `YOLO(...).predict` row. "
        f"Load average (1 min) before and after: {' / '.join(map(str, report.get('load_average', [])))} "
        f"on {os.cpu_count()} cores: other work on the machine slows multi-threaded arms most.",
        "",
        "| runtime | detector alone (images/s) | cascade (images/s) | cascade time vs its detector | detector speed-up | "
        "cascade speed-up | threads | peak memory, cascade (MB) |",
        "|---|---|---|---|---|---|---|---|",
        f"| plain `YOLO(...).predict` (PyTorch, ultralytics' own threads) | {plain['images_per_s']} | - | - | 1.00x | - | "
        f"{plain['threads']['detector']} | {plain['peak_rss_mb']} |",
    ]
    for row in report["backends"]:
        detector, cascade = row["detector"], row["cascade"]
        threads = cascade["threads"]
        lines.append(
            f"| {BACKEND_NAMES[row['backend']]} | {detector['images_per_s']} | {cascade['images_per_s']} | "
            f"{row['time_ratio']:.2f}x | {detector['images_per_s'] / plain['images_per_s']:.2f}x | "
            f"{cascade['images_per_s'] / plain['images_per_s']:.2f}x | {threads['detector']} / {threads['classifier']} | "
            f"{cascade['peak_rss_mb']} |")
    return lines


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
