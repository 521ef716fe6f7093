"""Train the YOLOv5 tumor detector on the merged, leakage-free registry data.

    python -m detect.train                                   # yolov5n, 256 px, all registry datasets
    python -m detect.train --model yolov5s --imgsz 640 --epochs 100 --device 0
    python -m detect.train --device 0,1 --batch 64           # DistributedDataParallel on two GPUs
    python -m detect.train --resume runs/detect/yolov5n-256  # continue an interrupted run
    python -m detect.train --resume runs/detect/yolov5n-256 --device 0 --workers 8  # ... on this machine's GPU

A run folder can be resumed on another machine (or after runs/merged/ was cleaned): when the merged
data.yaml it trained on is gone, the same merge is rebuilt from its cli_args.yaml and this machine's
registry (set MRI_DATA_DIR as the run had it, e.g. to a compact copy).

Runs go to a new folder under runs/detect/ (ultralytics adds a number rather than overwrite); the
resolved arguments are saved there as cli_args.yaml beside ultralytics' args.yaml.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import mri.offline  # noqa: F401  (offline environment before ultralytics is imported)
from mri.cli import DeviceError, check_device, resolve_path
from mri.files import write_yaml
from mri.offline import RUNS_DIR, disable_ultralytics_sync
from mri.registry import DatasetError, load_registry
from mri.scan_io import first_line


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--datasets", nargs="+", default=None, help="registry datasets to train on (default: all)")
    data.add_argument("--registry", default=None, help="datasets.yaml to read (default: the project's)")
    data.add_argument("--typed", action="store_true", help="train on glioma/meningioma/pituitary instead of one 'tumor' class")
    data.add_argument("--no-leakage-free", dest="leakage_free", action="store_false",
                      help="use the sources' own splits instead of the audit's leakage-free assignment")
    data.add_argument("--hold-out", nargs="+", default=None, metavar="DATASET",
                      help="keep these datasets unseen (with every image the audit links to them), to score "
                           "generalisation to a new source on them afterwards")
    data.add_argument("--fraction", type=float, default=1.0, help="train on this fraction of the training images")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="yolov5n", help="yolov5n, yolov5s, yolov5m, a model .yaml, or a local .pt to fine-tune")
    model.add_argument("--hyp", default=None,
                       help="augmentation preset in detect/hyp/ or a .yaml path: scanner (ultralytics' own "
                            "geometry plus scanner-like contrast, gamma, noise and blur), default (ultralytics "
                            "unchanged), standardised (ultralytics' augmentation on standardised slices), "
                            "standardised-multiscale, boxsafe, mri; see benchmarks/compare_recipes.py for how they "
                            "compare; the -continue presets add a no-warm-up schedule for continuing a standardised "
                            ".pt. Default: scanner from scratch; for a .pt, the input it was trained on "
                            "(standardised or default)")
    run = parser.add_argument_group("run")
    run.add_argument("--imgsz", type=int, default=256,
                     help="training image size in pixels (256: 320 and 416 lost to it on a held-out source, README)")
    run.add_argument("--epochs", type=int, default=30)
    run.add_argument("--hours", type=float, default=None,
                     help="train for this long instead: the epoch count and schedule adapt after each epoch "
                          "(ultralytics still picks its optimizer from --epochs: README)")
    run.add_argument("--batch", type=int, default=16, help="total batch size (split across GPUs under DDP)")
    run.add_argument("--patience", type=int, default=100,
                     help="stop after this many epochs without improvement (0: never); ultralytics' default, since a "
                          "run from a trained .pt starts a new schedule whose warm-up keeps validation mAP below its "
                          "first epoch for about 20 epochs")
    run.add_argument("--save-period", type=int, default=0, metavar="N",
                     help="also keep every N-th epoch's weights (weights/epochN.pt), e.g. to average the last few "
                          "with tools/average_weights.py (default: only last.pt and best.pt)")
    run.add_argument("--no-val", dest="val", action="store_false",
                     help="validate only after the last epoch (faster; weights/last.pt is then the one to use)")
    run.add_argument("--no-plots", dest="plots", action="store_false", help="skip ultralytics' label and result plots")
    run.add_argument("--workers", type=int, default=None,
                     help="data-loading processes (default 2; ultralytics uses none on a CPU)")
    run.add_argument("--device", default=None, help="cpu (the default), 0, or 0,1,... for DistributedDataParallel")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--name", default=None, help="run folder name under runs/detect/ (default: <model>-<imgsz>)")
    run.add_argument("--project", default=str(RUNS_DIR / "detect"), help="parent folder of run folders")
    run.add_argument("--resume", default=None, metavar="RUN_OR_LAST_PT",
                     help="continue an interrupted run in its folder, with its own --hyp and schedule; of the other "
                          "flags only --device and --workers count (default: the run's own)")
    return parser


RUNTIME_DEFAULTS = {"device": "cpu", "workers": 2}  # the machine's flags, not the recipe's: a resume takes those given


class ResumeError(ValueError):
    """A run that cannot be resumed: missing, damaged or finished. One line saying what to do instead."""


def find_last_checkpoint(run: str | Path) -> Path:
    path = resolve_path(run)
    candidate = path / "weights" / "last.pt" if path.is_dir() else path
    if not candidate.is_file():
        raise ResumeError(f"{run}: no weights/last.pt to resume from (give a run folder under runs/detect/ or its last.pt)")
    return candidate


def run_folder(last: Path) -> Path:
    """The run folder of a ``last.pt``: the folder above ``weights/``, or the file's own folder."""
    return last.parent.parent if last.parent.name == "weights" else last.parent


def check_resumable(last: Path) -> tuple[int, str]:
    """The last finished epoch (0-based) of an interrupted run's ``last.pt`` and the data.yaml it trained on;
    ``ResumeError`` if it cannot go on.

    The file is read with ultralytics' weights-only loading, so a damaged or crafted file is refused
    before ultralytics would, unresumable, start a new training on its own sample data instead.
    """
    from ultralytics.nn.tasks import torch_safe_load

    from detect.model import ultralytics_safe_loading

    try:
        with ultralytics_safe_loading():
            checkpoint, _ = torch_safe_load(str(last))
    except Exception as error:  # ultralytics and torch raise many types for a damaged file
        detail = first_line(error).replace("ERROR ❌️", "").replace(str(last), "the file").strip()
        raise ResumeError(f"{last}: damaged or not a training checkpoint, cannot resume ({detail[:160]})") from None
    epoch = checkpoint.get("epoch", -1) if isinstance(checkpoint, dict) else -1
    train_args = (checkpoint.get("train_args") or {}) if isinstance(checkpoint, dict) else {}
    if not isinstance(epoch, int) or epoch < 0 or checkpoint.get("optimizer") is None \
            or epoch + 1 >= int(train_args.get("epochs") or 0):
        run = run_folder(last)
        raise ResumeError(f"{run}: this run is finished, there is nothing to resume; to train on from its weights, "
                          f"start a new run: python -m detect.train --model {run / 'weights' / 'best.pt'} --epochs N")
    return epoch, str(train_args.get("data") or "")


def preset_for_input(weights: str | Path) -> str:
    """The preset that keeps a detector on the input it was trained on: converting one trained on raw slices to
    standardised ones tied on the held-out source at equal budget (README), while standardised from scratch won."""
    from detect.model import load_detector, trained_standardised

    return "standardised" if trained_standardised(load_detector(weights)) else "default"


def default_preset(source: str) -> str:
    """--hyp when not given: ``scanner`` from scratch (ahead of plain ultralytics and of ``standardised`` on a
    held-out source, all three side by side in two seeds: README), the input of the weights when fine-tuning a
    .pt (that comparison trained from scratch, so a .pt keeps ultralytics' default unless --hyp says otherwise)."""
    return preset_for_input(source) if source.endswith(".pt") else "scanner"


def saved_cli_args(run: Path) -> dict:
    """The flags a run was started with (its cli_args.yaml), or {} when it has none."""
    import yaml

    try:
        saved = yaml.safe_load((run / "cli_args.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return saved if isinstance(saved, dict) else {}


def merged_training_data(datasets=None, registry=None, typed=False, leakage_free=True, hold_out=None, **_):
    """The merged dataset that these data flags train on (built once, then found in runs/merged/)."""
    from mri.merge import merge_datasets

    return merge_datasets(load_registry(registry), datasets, typed=typed, leakage_free=leakage_free, hold_out=hold_out)


def rebuilt_training_data(run: Path, saved: dict, data: str) -> str | None:
    """None while the run's data.yaml is still there; else the same merge rebuilt from the run's cli_args.yaml,
    so a run copied to another machine, or whose runs/merged/ was cleaned, goes on."""
    if data and Path(data).is_file():
        return None
    data = data or "(none recorded)"
    if not saved:
        raise ResumeError(f"{run}: its training data {data} is gone and the run has no cli_args.yaml to rebuild it from")
    merged = merged_training_data(**saved)
    trained_on = saved.get("split_counts")
    if trained_on and dict(merged.counts) != dict(trained_on):  # another registry, data copy or split since it started
        raise ResumeError(f"{run}: its training data {data} is gone and this machine's merge differs from it "
                          f"({dict(merged.counts)} images, not {dict(trained_on)}); set MRI_DATA_DIR as the run had it")
    print(f"training data {data} is gone: rebuilt it as {merged.data_yaml}")
    return str(merged.data_yaml)


def resume(args, runtime: dict) -> int:
    """Continue an interrupted run in its own folder, with its own preset and schedule, on ``runtime``'s device and
    workers where given (else the run's own); one line and 2 if it cannot."""
    from ultralytics import YOLO

    from detect.engine import PRESET_ENV, MRIDetectionTrainer
    from detect.presets import load_preset

    try:
        last = find_last_checkpoint(args.resume)
        epoch, data = check_resumable(last)
        run = run_folder(last)
        saved = saved_cli_args(run)
        hyp = saved.get("hyp") if isinstance(saved.get("hyp"), str) else None
        hyp = hyp or args.hyp or preset_for_input(last)
        load_preset(hyp)
        rebuilt = rebuilt_training_data(run, saved, data)
    except (ResumeError, DatasetError, FileNotFoundError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    print(f"resuming {run} after epoch {epoch + 1} with augmentation preset '{hyp}'"
          + "".join(f", {key} {value}" for key, value in runtime.items()))
    os.environ[PRESET_ENV] = hyp
    # save_dir: the run folder where it is now, even if it (or MRI_RUNS_DIR) moved since it started; device and
    # workers only if given here (a run started on a CPU can go on on a GPU), everything else as the run started.
    YOLO(str(last)).train(resume=True, trainer=MRIDetectionTrainer, save_dir=str(run), **runtime,
                          **({"data": rebuilt} if rebuilt else {}))
    return 0


def main(args) -> int:
    from ultralytics import YOLO

    from detect.engine import PRESET_ENV, MRIDetectionTrainer, model_source, train_overrides
    from detect.presets import load_preset

    disable_ultralytics_sync()
    runtime = {key: getattr(args, key) for key in RUNTIME_DEFAULTS if getattr(args, key) is not None}
    for key, value in RUNTIME_DEFAULTS.items():
        setattr(args, key, runtime.get(key, value))
    try:
        check_device(args.device)
    except DeviceError as error:
        print(error, file=sys.stderr)
        return 2
    if args.resume:
        return resume(args, runtime)
    try:
        source = model_source(args.model)
        if args.hyp is None:
            args.hyp = default_preset(source)
            print(f"augmentation preset: {args.hyp} (--hyp to choose another)")
        preset = load_preset(args.hyp)
        check_multi_scale(preset, args.hyp)
        merged = merged_training_data(**vars(args))
    except (DatasetError, FileNotFoundError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    print(f"training data: {merged.data_yaml} ({merged.counts})")
    args.name = args.name or f"{Path(str(args.model)).stem}-{args.imgsz}" + ("-typed" if args.typed else "")
    os.environ[PRESET_ENV] = args.hyp
    model = YOLO(source)

    def save_cli_args(trainer):
        write_yaml(Path(trainer.save_dir) / "cli_args.yaml",
                   {**vars(args), "merged_data": str(merged.data_yaml), "split_counts": merged.counts})

    model.add_callback("on_pretrain_routine_start", save_cli_args)
    project = resolve_path(args.project)
    overrides = train_overrides(merged.data_yaml, preset, project, name=args.name, imgsz=args.imgsz, epochs=args.epochs,
                                batch=args.batch, seed=args.seed, device=args.device, workers=args.workers,
                                typed=args.typed, patience=args.patience, fraction=args.fraction, hours=args.hours,
                                plots=args.plots, val=args.val, save_period=args.save_period)
    try:
        model.train(trainer=MRIDetectionTrainer, **overrides)
    except ValueError as error:
        if not str(error).startswith("final batch=1"):  # ultralytics' multi-scale floor; anything else is a bug
            raise
        print(f"{error} (or --hyp standardised, without multi-scale)", file=sys.stderr)
        return 2
    return 0


def check_multi_scale(preset: dict, name: str) -> None:
    """A preset's multi-scale range needs an ultralytics that reads ``multi_scale`` as a range (8.3 reads it as
    on/off and would stop with a type error mid-setup)."""
    from ultralytics import __version__
    from ultralytics.cfg import CFG_FRACTION_KEYS

    value = preset["ultralytics"].get("multi_scale")
    if value and "multi_scale" not in CFG_FRACTION_KEYS:
        raise ValueError(f"--hyp {name}: multi_scale {value} needs an ultralytics that reads it as a range; "
                         f"{__version__} takes only on/off (use --hyp standardised, or a newer ultralytics)")


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
