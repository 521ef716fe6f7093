"""Benchmark: how long the duplicate and leakage audit takes on every registry image.

    python benchmarks/bench_audit.py                 # writes bench_audit.json and .md to a new runs/bench folder

Runs the audit (fingerprints, candidate pairs, verification, grouping, split assignment) --repeats times
and reports each stage's time; the target is under 2 minutes for the ~4,900 shared images on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import mri.offline  # noqa: F401
from mri.audit import audit
from mri.cli import seed_everything
from mri.files import write_atomic, write_json, write_yaml
from mri.registry import load_registry
from mri.reporting import machine, output_folder, utc_now


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--seed", type=int, default=0, help="random seed (saved with the arguments)")
    return parser


def main(args) -> int:
    seed_everything(args.seed)
    registry = load_registry()
    records = registry.images()
    runs = [audit(records, registry.split_rules)[0]["timings"] for _ in range(args.repeats)]
    median = {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
    report = {"date": utc_now(), "machine": machine(), "n_images": len(records), "repeats": args.repeats,
              "median_seconds": median, "runs": runs}
    out = output_folder(args.out, "audit")
    write_yaml(out / "args.yaml", vars(args))
    write_json(out / "bench_audit.json", report)
    lines = ["# Audit timing", "", f"{report['date']}, {report['machine']}: {len(records)} images, median of {args.repeats} runs.",
             "", "| stage | seconds |", "|---|---|", *[f"| {k} | {v} |" for k, v in median.items()], ""]
    write_atomic(out / "bench_audit.md", "\n".join(lines))
    print("\n".join(lines))
    print(f"report in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
