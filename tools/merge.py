"""Materialise registry datasets as one Ultralytics-ready detection dataset and print its data.yaml.

    python tools/merge.py                          # all datasets, class-agnostic, leakage-free splits
    python tools/merge.py --datasets rf_mri4 --typed
"""

import argparse
import sys

import mri.offline  # noqa: F401
from mri.cli import seed_everything
from mri.files import write_yaml
from mri.merge import merge_datasets
from mri.registry import DatasetError, load_registry


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=None, help="registry datasets (default: all)")
    parser.add_argument("--registry", default=None, help="datasets.yaml to read (default: the project's)")
    parser.add_argument("--typed", action="store_true", help="keep tumor types (drops untyped images)")
    parser.add_argument("--no-leakage-free", dest="leakage_free", action="store_false",
                        help="keep the sources' own splits")
    parser.add_argument("--out", default=None, help="parent folder (default: runs/merged)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (saved with the arguments)")
    return parser


def main(args) -> int:
    seed_everything(args.seed)
    try:
        merged = merge_datasets(load_registry(args.registry), args.datasets, typed=args.typed,
                                leakage_free=args.leakage_free, out_dir=args.out)
    except DatasetError as error:
        print(error, file=sys.stderr)
        return 2
    if not (merged.root / "args.yaml").exists():  # the arguments that made this (hash-named, reused) set
        write_yaml(merged.root / "args.yaml", vars(args))
    print(f"{merged.data_yaml}  classes={merged.names}  images={merged.counts}")
    if merged.unlisted:
        print(f"note: {merged.unlisted} images are not in the split assignment and kept their source split; "
              "re-run tools/audit.py --write-splits", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
