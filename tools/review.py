"""Curate labels and inspect mistakes in the fiftyone App.

    python tools/review.py load                                  # registry -> persistent dataset 'mri-tumors'
    python tools/review.py predict                               # detector + cascade boxes (shipped weights)
    python tools/review.py evaluate                              # scores, mistakenness, hardness, saved views
    python tools/review.py app --port 5151                       # serve the App on 127.0.0.1 until stopped
    python tools/review.py export --out curated/rf_mri4_v2 --name rf_mri4_curated

The database lives in fiftyone's folder (FIFTYONE_DATABASE_DIR moves it). See the README for the
step-by-step curation workflow.
"""

from __future__ import annotations

import argparse
import signal
import sys

import mri.offline  # noqa: F401
from mri import PROJECT_ROOT
from curation import DEFAULT_DATASET


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="fiftyone dataset name")
    parser.add_argument("--registry", default=None, help="datasets.yaml to read (default: the project's)")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="build or refresh the dataset from datasets.yaml")
    load.add_argument("--datasets", nargs="+", default=None, help="registry datasets (default: all)")
    load.add_argument("--splits", nargs="+", default=None, choices=["train", "val", "test"], help="default: all")
    load.add_argument("--no-audit", dest="audit", action="store_false", help="skip the near-duplicate groups")
    predict = commands.add_parser("predict", help="add detector and cascade predictions")
    predict.add_argument("--det-weights", default=str(PROJECT_ROOT / "weights" / "detector.pt"))
    predict.add_argument("--cls-weights", default=str(PROJECT_ROOT / "weights" / "classifier.pt"))
    predict.add_argument("--device", default="cpu")
    predict.add_argument("--conf", type=float, default=0.05, help="detector confidence to keep a box")
    commands.add_parser("evaluate", help="evaluate both fields, compute mistakenness/hardness, save views")
    app = commands.add_parser("app", help="serve the App on 127.0.0.1 until stopped (Ctrl-C or SIGTERM)")
    app.add_argument("--port", type=int, default=5151)
    app.add_argument("--address", default="127.0.0.1", help="bind address (keep 127.0.0.1 unless you mean it)")
    app.add_argument("--view", default=None, help="open this saved view")
    export = commands.add_parser("export", help="write corrected labels as a YOLO dataset plus a change list")
    export.add_argument("--out", required=True)
    export.add_argument("--name", default=None, help="name for the registry entry (default: <dataset>_curated)")
    return parser


def _load(args):
    import fiftyone as fo

    if not fo.dataset_exists(args.dataset):
        raise SystemExit(f"error: no fiftyone dataset '{args.dataset}' yet: run `python tools/review.py load` first")
    return fo.load_dataset(args.dataset)


def serve(dataset, port: int, address: str, view_name: str | None = None) -> int:
    import fiftyone as fo

    view = dataset.load_saved_view(view_name) if view_name else None
    session = fo.launch_app(dataset, view=view, remote=True, address=address, port=port, auto=False)
    print(f"App serving '{dataset.name}' at http://{address}:{port} (stop with Ctrl-C or SIGTERM)", flush=True)

    def stop(signum, frame):
        session.close()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    session.wait(-1)
    return 0


def main(args) -> int:
    from mri.registry import DatasetError, load_registry

    try:
        registry = load_registry(args.registry)
    except DatasetError as error:
        print(error, file=sys.stderr)
        return 2
    if args.command == "load":
        from classify.crop_data import split_records
        from curation.build import load_dataset

        try:
            by_split = split_records(registry, args.datasets)
        except DatasetError as error:
            print(error, file=sys.stderr)
            return 2
        records = [r for split in (args.splits or ["train", "val", "test"]) for r in by_split[split]]
        dataset = load_dataset(registry, records, args.dataset, audit=args.audit)
        print(f"dataset '{dataset.name}': {len(dataset)} samples")
    elif args.command == "predict":
        from cascade.pipeline import Cascade, WeightsError
        from curation.build import add_predictions

        try:
            cascade = Cascade.load(args.det_weights, args.cls_weights, args.conf, None, args.device)
        except WeightsError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        count = add_predictions(_load(args), cascade, conf=args.conf)
        print(f"predicted {count} samples")
    elif args.command == "evaluate":
        from curation.mistakes import SAVED_VIEWS, evaluate

        summary = evaluate(_load(args))
        print(f"mAP (fiftyone, COCO-style): detector {summary['detector_map']:.3f}, cascade {summary['cascade_map']:.3f}")
        print(f"detector tp/fp/fn {summary['detector_report']}, cascade {summary['cascade_report']}")
        print("saved views: " + ", ".join(SAVED_VIEWS))
    elif args.command == "app":
        return serve(_load(args), args.port, args.address, args.view)
    elif args.command == "export":
        from pathlib import Path

        from curation.export import export_curated

        dataset = _load(args)
        records = {r.key: r for r in registry.images()}
        name = args.name or f"{args.dataset.replace('-', '_')}_curated"
        result = export_curated(dataset, registry, records, Path(args.out).resolve(), name)
        print(f"exported {result['images']} images, {result['changes']} changes listed in changes.csv; "
              f"add {result['entry']} to datasets.yaml to train on it")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
