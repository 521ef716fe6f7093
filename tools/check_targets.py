"""Does a release meet its targets? Reads what the evaluation tools wrote; trains and predicts nothing.

    python tools/check_targets.py runs/eval/rf_mri4 runs/eval/br35h runs/eval/rsna_axial
    python tools/check_targets.py runs/eval/{rf_mri4,br35h,rsna_axial} --detect-val runs/eval-det/NAME --detector 0.850 0.598

Each folder is a ``tools/evaluate.py`` output (one test split); ``--detect-val`` a ``python -m detect.val`` output.
The defaults are the project's release targets: every split's cascade at mAP50 0.85 and mAP50-95 0.55, type
accuracy 0.93 where a split has typed boxes; the detector alone above the plain ultralytics baseline (0.840 /
0.586 on all test splits, at or above). Only test-split scores are accepted. One line per check; exit 0 if all
pass, 1 if any fails, 2 if a folder cannot be used.
"""

from __future__ import annotations

import argparse
import sys

from cascade.targets import MetricsError, cascade_checks, detector_checks
from mri.cli import resolve_path


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("evaluations", nargs="+", help="tools/evaluate.py output folders, one per test split")
    parser.add_argument("--cascade", nargs=2, type=float, default=[0.85, 0.55], metavar=("MAP50", "MAP50_95"),
                        help="each split's cascade floors")
    parser.add_argument("--type-accuracy", type=float, default=0.93,
                        help="floor for splits with typed boxes (negative: not checked)")
    parser.add_argument("--detect-val", default=None, metavar="DIR", help="a detect.val output to check too")
    parser.add_argument("--detector", nargs=2, type=float, default=[0.840, 0.586], metavar=("MAP50", "MAP50_95"),
                        help="the detector alone's floors (with --detect-val)")
    parser.add_argument("--seed", type=int, default=0, help="unused (nothing is random); kept for a uniform CLI")
    return parser


def main(args) -> int:
    type_floor = args.type_accuracy if args.type_accuracy >= 0 else None
    try:
        checks = [check for folder in args.evaluations
                  for check in cascade_checks(resolve_path(folder), *args.cascade, type_floor)]
        if args.detect_val:
            checks += detector_checks(resolve_path(args.detect_val), *args.detector)
    except MetricsError as error:
        print(error, file=sys.stderr)
        return 2
    for check in checks:
        print(check.line())
    if not args.detect_val:
        print("not checked  the detector alone (give --detect-val)")
    failed = sum(not check.passed for check in checks)
    print(f"{len(checks) - failed} of {len(checks)} targets met" + ("" if failed else ": all checked"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
