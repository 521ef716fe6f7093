"""Curate labels and inspect mistakes in the fiftyone App.

    python tools/review.py load                                  # registry -> persistent dataset 'mri-tumors'
    python tools/review.py predict                               # detector + cascade boxes (shipped weights)
    python tools/review.py evaluate                              # scores, type confusion, suspects, saved views
    python tools/review.py app --port 5151                       # serve the App on 127.0.0.1 until stopped
    python tools/review.py screenshot --view at-operating-point type-confusions --out docs/review_app.png
    python tools/review.py export --out curated/rf_mri4_v2 --name rf_mri4_curated

`load` again merges: new images are added and edited boxes are kept. The database lives in fiftyone's
folder (FIFTYONE_DATABASE_DIR moves it). `load`, `predict` and `evaluate` write into the dataset, so their
resolved arguments are kept there too (``dataset.info["commands"]``); `export` saves them as args.yaml beside
its files. See the README for the step-by-step curation workflow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mri.offline  # noqa: F401
from mri import PROJECT_ROOT
from curation import DEFAULT_DATASET


def get_args_parser() -> argparse.ArgumentParser:
    from curation.build import ON_CONFLICT
    from curation.mistakes import SHIPPED_DET_CONF

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="fiftyone dataset name")
    parser.add_argument("--registry", default=None, help="datasets.yaml to read (default: the project's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (saved with the arguments)")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="build the dataset from datasets.yaml, or merge into it keeping edits")
    load.add_argument("--datasets", nargs="+", default=None, help="registry datasets (default: all)")
    load.add_argument("--splits", nargs="+", default=None, choices=["train", "val", "test"], help="default: all")
    load.add_argument("--no-audit", dest="audit", action="store_false", help="skip the near-duplicate groups")
    load.add_argument("--on-conflict", choices=ON_CONFLICT, default="refuse",
                      help="a sample edited here whose source labels changed too: refuse the load (default), "
                           "keep the edit, or take the source's labels")
    predict = commands.add_parser("predict", help="add detector and cascade predictions")
    predict.add_argument("--det-weights", default=str(PROJECT_ROOT / "weights" / "detector.pt"))
    predict.add_argument("--cls-weights", default=str(PROJECT_ROOT / "weights" / "classifier.pt"))
    predict.add_argument("--device", default="cpu")
    predict.add_argument("--conf", type=float, default=0.05, help="lowest detector confidence stored (for the curves)")
    predict.add_argument("--operating-conf", type=float, default=SHIPPED_DET_CONF,
                         help="detector confidence the saved views cut at (default: the shipped setting)")
    commands.add_parser("evaluate", help="score both systems and types, rank suspect labels, save views")
    app = commands.add_parser("app", help="serve the App on 127.0.0.1 until stopped (Ctrl-C or SIGTERM)")
    app.add_argument("--port", type=int, default=5151)
    app.add_argument("--address", default="127.0.0.1", help="bind address (keep 127.0.0.1 unless you mean it)")
    app.add_argument("--view", default=None, help="open this saved view (default: at-operating-point once saved)")
    shot = commands.add_parser("screenshot", help="picture of the App in headless Chromium (pop-up dismissed)")
    shot.add_argument("--view", nargs="+", default=[None],
                      help="saved view(s) to show, pictured one above the other (default: at-operating-point once saved)")
    shot.add_argument("--out", default="docs/review_app.png")
    shot.add_argument("--port", type=int, default=5152)
    shot.add_argument("--timeout", type=float, default=300, help="seconds to wait for the App to draw")
    export = commands.add_parser("export", help="write corrected labels as a YOLO dataset plus a change list")
    export.add_argument("--out", required=True, help="new folder (an existing one gets -2, -3...)")
    export.add_argument("--name", default=None, help="name for the registry entry (default: <dataset>_curated)")
    return parser


def _load(args):
    import fiftyone as fo

    if not fo.dataset_exists(args.dataset):
        raise SystemExit(f"error: no fiftyone dataset '{args.dataset}' yet: run `python tools/review.py load` first")
    return fo.load_dataset(args.dataset)


def load(args, registry) -> int:
    from curation.app_config import configure_app
    from curation.build import EditConflict, duplicate_groups, load_dataset, record_command
    from mri.registry import DatasetError
    from mri.splits import registry_records

    try:
        records, _ = registry_records(registry, args.datasets)
    except DatasetError as error:
        print(error, file=sys.stderr)
        return 2
    records = [r for r in records if r.split in (args.splits or ["train", "val", "test"])]
    duplicates = {}
    if args.audit:
        try:  # every registry image, so copies in splits or datasets not loaded are found too
            audited = registry.images()
        except DatasetError:
            print("note: some registry datasets do not load; near-duplicates searched among the chosen ones only",
                  file=sys.stderr)
            audited = registry.images(args.datasets)
        duplicates = duplicate_groups(audited, registry)
    try:
        dataset, report = load_dataset(registry, records, args.dataset, duplicates, args.on_conflict)
    except EditConflict as error:
        for line in error.conflicts:
            print(line, file=sys.stderr)
        print(f"error: {len(error.conflicts)} sample(s) edited here changed at the source too; nothing was loaded. "
              "Re-run with --on-conflict keep-edits or --on-conflict take-source", file=sys.stderr)
        return 1
    configure_app(dataset)
    record_command(dataset, vars(args))
    for line in report.conflicts:
        print(f"conflict ({args.on_conflict}): {line}")
    print(f"dataset '{dataset.name}': {len(dataset)} samples ({report.added} added, {report.refreshed} refreshed, "
          f"{report.relabelled} relabelled from changed sources, {report.kept_edits} with edited boxes kept)")
    return 0


def predict(args) -> int:
    from cascade.pipeline import Cascade, WeightsError
    from curation.app_config import configure_app
    from curation.build import add_predictions, record_command, weights_name
    from mri.cli import DeviceError

    try:
        cascade = Cascade.load(args.det_weights, args.cls_weights, args.conf, None, args.device)
    except (WeightsError, DeviceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    dataset = _load(args)
    count = add_predictions(dataset, cascade, conf=args.conf)
    dataset.info["operating_point"] = {"det_conf": args.operating_conf, "cls_threshold": cascade.threshold,
                                       "det_weights": weights_name(args.det_weights),
                                       "cls_weights": weights_name(args.cls_weights), "lowest_conf": args.conf}
    dataset.save()
    configure_app(dataset)
    record_command(dataset, vars(args))
    print(f"predicted {count} samples (boxes from confidence {args.conf}; views at {args.operating_conf}, "
          f"classifier threshold {cascade.threshold:.3f})")
    return 0


def evaluate(args) -> int:
    from curation.build import record_command
    from curation.mistakes import SAVED_VIEWS, evaluate as score
    from curation.type_confusion import format_confusion

    dataset = _load(args)
    summary = score(dataset)
    record_command(dataset, vars(args))
    at = summary["operating_conf"]
    print(f"mAP (fiftyone, COCO-style, every box): detector {summary['detector_map']:.3f}, "
          f"cascade {summary['cascade_map']:.3f}")
    print(f"at the operating point (detector confidence >= {at}): detector tp/fp/fn {summary['detector_at_op']}, "
          f"cascade (kept boxes) {summary['cascade_at_op']}")
    print("types of the tumors the cascade finds at the operating point:")
    print(format_confusion(summary["type_confusion"]))
    print("saved views: " + ", ".join(SAVED_VIEWS))
    return 0


def app(args) -> int:
    from curation.app import UnknownView, saved_view, serve

    dataset = _load(args)
    try:
        view = saved_view(dataset, args.view)
    except UnknownView as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return serve(dataset, view, args.port, args.address)


def screenshot(args) -> int:
    import tempfile
    from pathlib import Path

    from curation.app import (DEFAULT_VIEW, UnknownView, app_url, capture, launch, saved_view, stack_pictures,
                              wait_until_serving)
    from curation.browser import BrowserError
    from mri.cli import resolve_path

    dataset = _load(args)
    try:
        views = [saved_view(dataset, name) for name in args.view]
    except UnknownView as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    names = [name or (DEFAULT_VIEW if view is not None else None) for name, view in zip(args.view, views)]
    session = launch(dataset, views[0], args.port, "127.0.0.1")
    try:
        wait_until_serving("127.0.0.1", args.port, timeout=args.timeout)
        with tempfile.TemporaryDirectory() as scratch:
            shots = [capture(app_url("127.0.0.1", args.port, dataset.name, name), Path(scratch) / f"{i}.png",
                             timeout=args.timeout) for i, name in enumerate(names)]
            out = stack_pictures(shots, resolve_path(args.out))
    except BrowserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        session.close()
    for name, shot in zip(names, shots):
        print(f"{name or 'all samples'}: {shot['lookers']} thumbnails, field colours drawn: {', '.join(shot['colours'])}")
    print(f"wrote {out}")
    return 0


def export(args, registry) -> int:
    from curation.export import export_curated
    from mri.cli import resolve_path
    from mri.files import write_yaml

    dataset = _load(args)
    sources = sorted(set(dataset.distinct("dataset")) & set(registry.datasets))
    records = {r.key: r for r in registry.images(sources)} if sources else {}
    name = args.name or f"{args.dataset.replace('-', '_')}_curated"
    result = export_curated(dataset, registry, records, resolve_path(args.out), name)
    for label in result["unknown_labels"]:
        print(f"skipped boxes labelled '{label}': not a class of {registry.path}", file=sys.stderr)
    images = ", ".join(f"{split} {n}" for split, n in result["images"].items()) or "none"
    write_yaml(Path(result["folder"]) / "args.yaml", vars(args))
    print(f"exported to {result['folder']}: images {images}; {result['changes']} changes listed in changes.csv")
    print(f"paste {result['entry']} under `datasets:` in datasets.yaml to train on it")
    return 0


def main(args) -> int:
    from mri.cli import seed_everything
    from mri.registry import DatasetError, load_registry

    seed_everything(args.seed)
    try:
        registry = load_registry(args.registry)
    except DatasetError as error:
        print(error, file=sys.stderr)
        return 2
    if args.command == "load":
        return load(args, registry)
    if args.command == "predict":
        return predict(args)
    if args.command == "evaluate":
        return evaluate(args)
    if args.command == "app":
        return app(args)
    if args.command == "screenshot":
        return screenshot(args)
    return export(args, registry)


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
