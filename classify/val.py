"""Evaluate a classifier checkpoint on the crops of a registry split (leakage-free).

    python -m classify.val --weights weights/classifier.pt                  # all datasets, test split
    python -m classify.val --weights runs/classify/NAME/best.pt --datasets br35h --split val

Writes metrics.json (tumor-vs-not F1, precision, recall, ROC-AUC, type accuracy and macro-F1, overall
and per source dataset, at the checkpoint's max-F1 threshold and at its default threshold) to a new
folder under runs/classify-val/.
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
    return parser


def main(args) -> int:
    from classify.checkpoint import CheckpointError, crop_rule_of, load_checkpoint
    from classify.crop_data import cached_split, split_records
    from classify.engine import classification_metrics
    from classify.run import evaluate_checkpoint
    from mri.files import new_run_dir, write_json, write_yaml
    from mri.registry import DatasetError, load_registry

    seed_everything(args.seed)
    try:
        checkpoint = load_checkpoint(resolve_path(args.weights))
        registry = load_registry(args.registry)
        records = split_records(registry, args.datasets)[args.split]
    except (CheckpointError, DatasetError) as error:
        print(error, file=sys.stderr)
        return 2
    crops = cached_split(records, registry, crop_rule_of(checkpoint), False, args.seed)
    thresholds = checkpoint["thresholds"]
    metrics, probabilities = evaluate_checkpoint(checkpoint, crops, args.device, thresholds.get("max_f1", thresholds["default"]))
    metrics["at_default_threshold"] = classification_metrics(probabilities, crops.labels, thresholds["default"])
    metrics.update(weights=str(resolve_path(args.weights)), split=args.split, thresholds=thresholds, n_crops=len(crops))
    out = resolve_path(args.out) if args.out else new_run_dir(RUNS_DIR / "classify-val", args.split)
    out.mkdir(parents=True, exist_ok=True)
    write_yaml(out / "args.yaml", vars(args))
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
