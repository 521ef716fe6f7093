"""Evaluate a classifier checkpoint on the crops of a registry split (leakage-free).

    python -m classify.val --weights weights/classifier.pt                  # all datasets, test split
    python -m classify.val --weights runs/classify/NAME/best.pt --datasets br35h --split val
    python -m classify.val --weights runs/classify/NAME/best.pt --calibrate   # an interrupted run's checkpoint

Writes metrics.json (tumor-vs-not F1, precision, recall, ROC-AUC, type accuracy and macro-F1, overall
and per source dataset, at the checkpoint's max-F1 threshold and at its default threshold: the same shape as
a training run's ``validation`` and ``test`` entries, ``classify.run.split_report``) to a new
folder under runs/classify-val/ (or --out; an existing non-empty folder gets a new sibling).

``--calibrate`` fits the decision thresholds on the validation split, as a finished training run does, and
saves the calibrated checkpoint as calibrated.pt beside metrics.json (the given file stays as it is).
"""

from __future__ import annotations

import argparse
import sys

import mri.offline  # noqa: F401
from mri.cli import resolve_path, seed_everything
from mri.offline import RUNS_DIR


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--registry", default=None)
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--calibrate", action="store_true",
                        help="calibrate the thresholds on the validation split first (for a checkpoint without them)")
    parser.add_argument("--min-sensitivity", type=float, default=None,
                        help="with --calibrate: the high-sensitivity threshold's target (default: the run's own)")
    return parser


def main(args) -> int:
    from classify.checkpoint import CheckpointError, crop_rule_of, load_checkpoint, save_checkpoint
    from classify.crop_data import cached_split, split_records
    from classify.run import calibrate_checkpoint, evaluate_checkpoint
    from mri.cli import DeviceError, check_device
    from mri.files import OutputError, new_run_dir, output_dir, write_json, write_yaml
    from mri.registry import DatasetError, load_registry

    seed_everything(args.seed)
    try:
        check_device(args.device)
        weights = resolve_path(args.weights)
        checkpoint = load_checkpoint(weights, calibrated=not args.calibrate)
        registry = load_registry(args.registry)
        splits = split_records(registry, args.datasets)
        out = output_dir(resolve_path(args.out)) if args.out else new_run_dir(RUNS_DIR / "classify-val", args.split)
    except (CheckpointError, DatasetError, DeviceError, OutputError) as error:
        print(error, file=sys.stderr)
        return 2
    write_yaml(out / "args.yaml", vars(args))
    rule = crop_rule_of(checkpoint)
    if args.calibrate:
        val_crops = cached_split(splits["val"], registry, rule, False, args.seed)
        min_sensitivity = args.min_sensitivity or checkpoint.get("args", {}).get("min_sensitivity", 0.95)
        checkpoint, _ = calibrate_checkpoint(checkpoint, val_crops, args.device, min_sensitivity)
        save_checkpoint(out / "calibrated.pt", checkpoint)
        print(f"thresholds {checkpoint['thresholds']} calibrated on {len(val_crops)} validation crops: "
              f"{out / 'calibrated.pt'}")
    crops = cached_split(splits[args.split], registry, rule, False, args.seed)
    report, _ = evaluate_checkpoint(checkpoint, crops, args.device)
    metrics = {"weights": str(weights), "split": args.split, **report}
    write_json(out / "metrics.json", metrics)
    overall = metrics["overall"]
    print(f"{len(crops)} {args.split} crops: tumor F1 {overall['tumor_f1']:.3f} (P {overall['tumor_precision']:.3f} "
          f"R {overall['tumor_recall']:.3f} AUC {overall['roc_auc'] or 0:.3f}), type accuracy {overall['type_accuracy'] or 0:.3f}")
    for name, figures in metrics["per_dataset"].items():
        print(f"  {name}: tumor F1 {figures['tumor_f1']:.3f}, type accuracy {figures['type_accuracy'] or 0:.3f} ({figures['n']} crops)")
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
