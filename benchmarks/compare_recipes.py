"""Compare detector training recipes at equal budget, choosing by a source none of them trained on.

    python benchmarks/compare_recipes.py                                   # default, scanner, standardised at 256 px
    python benchmarks/compare_recipes.py --arms default scanner@320 --epochs 30 --device 0 --jobs 2
    python benchmarks/compare_recipes.py --arms standardised standardised+yolov5s --device 0   # model size
    python benchmarks/compare_recipes.py --resume runs/bench/compare_recipes   # finish or re-score an earlier run
    python benchmarks/compare_recipes.py --arms standardised --average-last 5     # last.pt vs its last 5 epochs averaged
    python benchmarks/compare_recipes.py --arms standardised standardised@416:256 --hold-out rf_mri4   # train at 416, run at 256

Every arm (``PRESET``, ``PRESET@IMGSZ``, ``PRESET@IMGSZ:RUN_IMGSZ`` or ``PRESET@IMGSZ+MODEL``, presets in detect/hyp/) trains with
``python -m detect.train`` on the registry without ``--hold-out`` (default br35h: mixed sizes, sequences and
hospitals, the least like the others) and without every image the audit links to it; same epochs, batch, seed
and fraction for all. Each arm's last.pt is scored on the leakage-free test splits of the training sources and
on every image of the held-out source. Writes compare_recipes.json and .md to a new runs/bench/compare_recipes
folder; ``--resume`` skips finished arms, resumes interrupted ones and scores again (e.g. on full-size data
after training on a compact copy). The first arm is the plain baseline: keep it ``default``.
"""

from __future__ import annotations

import argparse
import json
import sys

import mri.offline  # noqa: F401
from mri.cli import resolve_path, seed_everything
from mri.files import write_atomic, write_json, write_yaml
from mri.registry import DatasetError, load_registry
from mri.reporting import machine, output_folder, utc_now

# plain ultralytics, the recipe detect.train uses from scratch, and the runner-up; the others lost or tied
# earlier (README) and stay as presets
DEFAULT_ARMS = ["default", "scanner", "standardised"]
SETTING_KEYS = ("model", "epochs", "batch", "fraction", "seed", "device", "workers", "hold_out", "registry", "average_last")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS,
                        help="PRESET, PRESET@IMGSZ, PRESET@IMGSZ:RUN_IMGSZ (trained at IMGSZ, scored at RUN_IMGSZ) or "
                             "PRESET@IMGSZ+MODEL; the first is the baseline")
    parser.add_argument("--hold-out", nargs="+", default=["br35h"], help="registry datasets no arm trains on")
    parser.add_argument("--registry", default=None, help="datasets.yaml to read (default: the project's)")
    parser.add_argument("--model", default="yolov5n", help="model of every arm that does not name one")
    parser.add_argument("--imgsz", type=int, default=256, help="image size of arms that do not name one")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--fraction", type=float, default=1.0, help="fraction of the training images each arm sees")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1, help="arms trained at the same time")
    parser.add_argument("--average-last", type=int, default=None, metavar="K",
                        help="also score each arm's last K epochs' weights averaged, as ARM~avgK (same training; "
                             "each epoch's checkpoint is kept, 10-25 MB for yolov5n); with --resume, the saved value "
                             "unless given")
    parser.add_argument("--score", choices=["both", "held-out", "none"], default="both",
                        help="what to score after training (held-out alone is quicker, for choosing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="report folder (default: a new runs/bench/compare_recipes)")
    parser.add_argument("--resume", default=None, metavar="FOLDER", help="continue the comparison in FOLDER")
    return parser


def load_settings(args) -> tuple[dict, list[str]]:
    if not args.resume:
        settings, arms = {k: getattr(args, k) for k in SETTING_KEYS}, args.arms
    else:
        saved = json.loads((resolve_path(args.resume) / "settings.json").read_text())
        settings = {"registry": None, "average_last": 0, **saved["settings"], "device": args.device, "workers": args.workers}
        arms = saved["arms"]
    if args.average_last is not None:
        settings["average_last"] = args.average_last
    settings["average_last"] = settings["average_last"] or 0
    if not 0 <= settings["average_last"] <= settings["epochs"]:
        raise ValueError(f"--average-last {settings['average_last']}: between 1 and the {settings['epochs']} epochs "
                         "an arm trains (0: none)")
    return settings, arms


def main(args) -> int:
    from detect.compare import Arm, averaged_name, averaged_weights, pick_winner, render, score_arm, train_arms, trained_on
    from detect.engine import model_source
    from detect.evaluate import load_ground_truth
    from mri.splits import registry_records

    seed_everything(args.seed)
    try:
        settings, arm_specs = load_settings(args)
        arms = [Arm.parse(spec, args.imgsz) for spec in arm_specs]
        for model in {settings["model"], *(arm.model for arm in arms if arm.model)}:
            model_source(model)  # a missing model fails here, not after the arms before it have trained
        registry = load_registry(settings.get("registry"))
        held_out = settings["hold_out"]
        seen = [name for name in registry.datasets if name not in held_out]
        test_sets = {}
        if args.score == "both":
            test_sets["in_distribution"] = load_ground_truth(seen, "test", registry)
        if args.score in ("both", "held-out"):
            test_sets["held_out"] = registry_records(registry, held_out)[0]
    except (DatasetError, FileNotFoundError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    out = resolve_path(args.resume) if args.resume else output_folder(args.out, "compare_recipes")
    # arms by full name (preset@imgsz[:run_imgsz][+model]), so --resume rebuilds them whatever its own --imgsz
    write_json(out / "settings.json", {"settings": settings, "arms": [arm.name for arm in arms]})
    write_yaml(out / "args.yaml", vars(args))
    try:
        trained = train_arms(arms, out, settings, args.jobs)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    average_last = settings["average_last"]
    try:
        candidates = [(arm, arm.name, trained[arm.name]["weights"]) for arm in arms]
        if average_last:
            candidates += [(arm, averaged_name(arm, average_last), averaged_weights(arm, out, average_last)) for arm in arms]
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    rows = []
    for arm, name, weights in candidates:
        scores = score_arm(weights, arm.scoring_imgsz, test_sets, args.device) if test_sets else {}
        rows.append({"arm": name, "train_seconds": trained[arm.name]["train_seconds"], "scores": scores})
        print(f"{name}: {json.dumps(scores)}", flush=True)
    report = {"date": utc_now(), "machine": machine(args.device), "trained_on": trained_on(trained),
              "settings": settings, "arms": rows,
              "winner": pick_winner(rows) if "held_out" in test_sets else None}
    write_json(out / "compare_recipes.json", report)
    write_atomic(out / "compare_recipes.md", render(report))
    print(render(report))
    print(f"report in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
