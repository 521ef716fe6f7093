"""The seed experiment, reproduced: small CNN from scratch vs EfficientNet-B4 from scratch vs
EfficientNet-Lite with ImageNet weights, on the same crops with the same budget.

    python benchmarks/compare_classifiers.py                                  # 128 px, 8 epochs, 4000 crops
    python benchmarks/compare_classifiers.py --proposals runs/bench/compare_recipes/arms/default@256
    python benchmarks/compare_classifiers.py --max-train-crops 0 --hold-out   # all crops, no held-out source

Each model trains through ``classify.train`` (same crops, augmentation, optimiser, epochs) without the
``--hold-out`` source (default br35h, and every image the audit links to it), and is scored on the
leakage-free test crops of the training sources and on every crop of the held-out source. With
``--proposals`` (a detector trained without that source too) all models also learn from its boxes.
Writes compare_classifiers.json and .md to a new runs/bench/ folder.
"""

from __future__ import annotations

import argparse
import json
import sys

import mri.offline  # noqa: F401
from mri.cli import resolve_path
from mri.files import write_atomic, write_json, write_yaml
from mri.reporting import fmt, machine, output_folder, utc_now

CONTENDERS = [  # the slowest last, so a cut-short run still compares the other two
    ("tf_efficientnet_lite0", "imagenet", "EfficientNet-Lite0, ImageNet transfer"),
    ("baseline", "none", "small CNN (2 conv + dense), from scratch"),
    ("efficientnet_b4", "none", "EfficientNet-B4, from scratch"),
]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-train-crops", type=int, default=4000, help="0: all training crops")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="report folder (default: a new runs/bench/compare_classifiers)")
    parser.add_argument("--resume", default=None, metavar="FOLDER",
                        help="continue in FOLDER: models whose run finished there are scored, not retrained")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", default=None, help="run only these architectures")
    parser.add_argument("--hold-out", nargs="*", default=["br35h"], help="datasets no model trains on (none: empty)")
    parser.add_argument("--proposals", default=None, help="detector run or .pt whose boxes are added as crops")
    parser.add_argument("--fit-fusion", action="store_true", help="with --proposals: fit the score fusion too")
    parser.add_argument("--standardise", action="store_true",
                        help="every model cuts its crops from standardised slices (classify.train --standardise)")
    return parser


def main(args) -> int:
    from classify import train

    out = resolve_path(args.resume) if args.resume else output_folder(args.out, "compare_classifiers")
    write_yaml(out / "args.yaml", vars(args))
    rows = []
    for arch, pretrained, label in CONTENDERS:
        if args.only and arch not in args.only:
            continue
        flags = ["--arch", arch, "--pretrained", pretrained, "--input-size", str(args.input_size),
                 "--epochs", str(args.epochs), "--batch", str(args.batch), "--lr", str(args.lr),
                 "--device", args.device, "--seed", str(args.seed), "--project", str(out), "--name", arch]
        if args.max_train_crops:
            flags += ["--max-train-crops", str(args.max_train_crops)]
        if args.hold_out:
            flags += ["--hold-out", *args.hold_out]
        if args.proposals:
            flags += ["--proposals", args.proposals] + (["--fit-fusion"] if args.fit_fusion else [])
        if args.standardise:
            flags += ["--standardise"]
        finished = (out / arch / "metrics.json").is_file()
        code = 0 if finished else train.main(train.get_args_parser().parse_args(flags))
        if code != 0:
            print(f"{arch}: training failed (exit {code})", file=sys.stderr)
            return code
        metrics = json.loads((out / arch / "metrics.json").read_text())
        rows.append({"arch": arch, "pretrained": pretrained, "label": label, "train_seconds": metrics["train_seconds"],
                     "n_train_crops": metrics["n_train_crops"], "test": metrics["test"],
                     "held_out": score_held_out(out / arch / "best.pt", args) if args.hold_out else None})
    import torch

    report = {"date": utc_now(), "machine": machine(args.device), "torch": torch.__version__, "setting": vars(args), "results": rows}
    write_json(out / "compare_classifiers.json", report)
    write_atomic(out / "compare_classifiers.md", render(report))
    print(render(report))
    print(f"report in {out}")
    return 0


def score_held_out(weights, args) -> dict:
    """Crop metrics of one trained model on every image of the held-out datasets (max-F1 threshold)."""
    from classify.checkpoint import crop_rule_of, load_checkpoint
    from classify.crop_data import cached_split
    from classify.run import evaluate_checkpoint
    from mri.registry import load_registry
    from mri.splits import registry_records

    checkpoint = load_checkpoint(weights)
    registry = load_registry()
    crops = cached_split(registry_records(registry, args.hold_out)[0], registry, crop_rule_of(checkpoint), False, args.seed)
    return evaluate_checkpoint(checkpoint, crops, args.device)[0]


def render(report: dict) -> str:
    setting = report["setting"]
    lines = [
        "# Classifier comparison: from scratch vs transfer learning",
        "",
        f"{report['date']}, {report['machine']}, torch {report['torch']}. Same crops and budget for every model: "
        f"{setting['input_size']} px crops, {setting['epochs']} epochs, batch {setting['batch']}, AdamW + one-cycle "
        f"(lr {setting['lr']}), `mri` augmentation preset, "
        f"{'all' if not setting['max_train_crops'] else setting['max_train_crops']} training crops"
        f"{', detector proposals from `' + str(setting['proposals']) + '`' if setting.get('proposals') else ''}. "
        f"Trained without {', '.join(setting.get('hold_out') or []) or 'no dataset'}. Test: the leakage-free test "
        "crops of the training sources; held-out: every crop of the held-out source; tumor-vs-not at the max-F1 "
        "threshold calibrated on validation.",
        "",
        "| model | tumor F1 | precision | recall | ROC-AUC | type accuracy | type macro-F1 | held-out tumor F1 | held-out ROC-AUC | training time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["results"]:
        o = row["test"]["overall"]
        h = (row.get("held_out") or {}).get("overall", {})
        lines.append(f"| {row['label']} | {fmt(o['tumor_f1'])} | {fmt(o['tumor_precision'])} | {fmt(o['tumor_recall'])} | "
                     f"{fmt(o['roc_auc'])} | {fmt(o['type_accuracy'])} | {fmt(o['type_macro_f1'])} | "
                     f"{fmt(h.get('tumor_f1'))} | {fmt(h.get('roc_auc'))} | {row['train_seconds']:.0f} |")
    lines += ["", "Tumor F1 per test dataset:", "", "| model | " + " | ".join(sorted(report["results"][0]["test"]["per_dataset"])) + " |",
              "|---|" + "---|" * len(report["results"][0]["test"]["per_dataset"])] if report["results"] else []
    for row in report["results"]:
        per = row["test"]["per_dataset"]
        lines.append(f"| {row['label']} | " + " | ".join(fmt(per[name]["tumor_f1"]) for name in sorted(per)) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
