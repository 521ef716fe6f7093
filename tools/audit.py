"""Audit the registry's images for near-duplicates and patient leakage across splits.

    python tools/audit.py --out runs/audit                      # audit.json + audit.md
    python tools/audit.py --out runs/audit --write-splits       # also the leakage-free split file
"""

import argparse
import sys

import mri.offline  # noqa: F401  (offline environment before any heavy import)
from mri.audit import audit, render_markdown
from mri.files import OutputError, output_dir, write_atomic, write_csv, write_json, write_yaml
from mri.registry import DatasetError, load_registry
from mri.cli import resolve_path
from mri.splits import FIELDS, default_assignment_path


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for audit.json and audit.md (a new sibling if it holds files)")
    parser.add_argument("--registry", default=None, help="datasets.yaml to read (default: the project's)")
    parser.add_argument("--datasets", nargs="+", default=None, help="registry datasets to audit (default: all)")
    parser.add_argument("--write-splits", nargs="?", const="", default=None, metavar="CSV",
                        help="write the leakage-free split assignment (default path: datasets.yaml's split_rules.assignment)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (saved with the arguments)")
    return parser


def main(args) -> int:
    from mri.cli import seed_everything

    seed_everything(args.seed)
    try:
        registry = load_registry(args.registry)
        records = registry.images(args.datasets)
    except DatasetError as error:
        print(error, file=sys.stderr)
        return 2
    try:  # never into an earlier audit: a non-empty --out gets a new sibling folder
        out = output_dir(resolve_path(args.out))
    except OutputError as error:
        print(error, file=sys.stderr)
        return 2
    report, split_rows = audit(records, registry.split_rules)
    write_json(out / "audit.json", report)
    write_atomic(out / "audit.md", render_markdown(report))
    write_yaml(out / "args.yaml", vars(args))
    summary = report["summary"]
    print(f"audited {report['n_images']} images in {report['timings']['total_s']:.1f} s: "
          f"{summary['duplicate_groups']} near-duplicate groups, {summary['cross_split_groups']} cross a split; "
          f"report in {out / 'audit.md'}")
    if args.write_splits is not None:
        target = resolve_path(args.write_splits) if args.write_splits else default_assignment_path(registry)
        if target is None:
            print("no path given and datasets.yaml has no split_rules.assignment", file=sys.stderr)
            return 2
        write_csv(target, split_rows, FIELDS)
        print(f"leakage-free split written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
