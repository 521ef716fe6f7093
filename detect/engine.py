"""Training the detector: an ultralytics DetectionTrainer with MRI intensity augmentation and all cores.

The trainer is a subclass rather than callbacks because ultralytics rebuilds the trainer in each
DistributedDataParallel worker from its class: what lives on the class reaches every GPU process.
The augmentation preset travels to those workers in the MRI_DETECT_PRESET environment variable.
"""

from __future__ import annotations

import contextlib
import os
import types
from copy import copy
from pathlib import Path

from ultralytics.data.utils import img2label_paths
from ultralytics.models.yolo.detect import DetectionTrainer

from detect.augment import MRIIntensity
from detect.model import mark_standardised
from detect.presets import load_preset
from mri.cli import resolve_path
from mri.files import lock_if_writable
from mri.intensity import standardise
from mri.offline import restore_torch_threads

PRESET_ENV = "MRI_DETECT_PRESET"
MODEL_FAMILY = {"yolov5n": "yolov5n.yaml", "yolov5s": "yolov5s.yaml", "yolov5m": "yolov5m.yaml"}


class MRIDetectionTrainer(DetectionTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.preset = load_preset(os.environ.get(PRESET_ENV, "mri"))
        self.standardise = bool(self.preset["input"].get("standardise"))
        if self.standardise:
            # every saved checkpoint says so, also an interrupted run's: inference must standardise for it too
            self.add_callback("on_model_save", _mark_checkpoints_standardised)
            self.add_callback("on_train_end", _mark_checkpoints_standardised)

    def _setup_train(self):
        super()._setup_train()
        restore_torch_threads()

    def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None):
        # ultralytics scans the labels into labels/<split>.cache, shared by every run on this data: two runs
        # started together (compare_recipes --jobs 2) would write it at once and one of them crash
        with _label_cache_lock(img_path):
            dataset = super().build_dataset(img_path, mode, batch)
        intensity = self.preset["intensity"]
        if mode == "train" and intensity:
            _add_intensity_transform(dataset, MRIIntensity(**intensity, seed=self.args.seed), copy(self.args))
        if self.standardise:
            _standardise_loaded_images(dataset)
        return dataset


def _label_cache_lock(img_path):
    """A lock beside the label cache ultralytics writes for an image folder; no lock for lists and list files."""
    if not isinstance(img_path, (str, Path)) or not Path(img_path).is_dir():
        return contextlib.nullcontext()
    label_dir = Path(img2label_paths([str(Path(img_path) / "image.jpg")])[0]).parent
    cache = label_dir.with_suffix(".cache")  # as ultralytics names it
    return lock_if_writable(cache.with_name(cache.name + ".lock"))


def _standardise_loaded_images(dataset) -> None:
    """Every image the dataset loads (training and validation, cached or not) standardised before augmentation,
    as ``detect.model.predict_boxes`` does at inference."""
    original = dataset.load_image

    def load_image(self, i, *args, **kwargs):
        image, original_hw, resized_hw = original(i, *args, **kwargs)
        return standardise(image), original_hw, resized_hw

    dataset.load_image = types.MethodType(load_image, dataset)


def _mark_checkpoints_standardised(trainer) -> None:
    this_epoch = Path(trainer.wdir) / f"epoch{trainer.epoch}.pt"  # as ultralytics names --save-period's files
    for checkpoint in (trainer.last, trainer.best, this_epoch):
        if Path(checkpoint).is_file():
            mark_standardised(checkpoint)


def _add_intensity_transform(dataset, transform: MRIIntensity, hyp) -> None:
    """Insert ``transform`` before ultralytics' final Format step, also after close_mosaic rebuilds."""
    original = dataset.build_transforms

    def build_transforms(self, hyp):
        transforms = original(hyp)
        transforms.insert(-1, transform)
        return transforms

    dataset.build_transforms = types.MethodType(build_transforms, dataset)
    dataset.transforms = dataset.build_transforms(hyp)


def model_source(model: str) -> str:
    """A model family name (yolov5n/s/m), a model .yaml, or a local .pt to fine-tune; never a download."""
    if model in MODEL_FAMILY:
        return MODEL_FAMILY[model]
    path = resolve_path(model)
    if path.suffix == ".yaml" and not path.exists():
        return model  # an ultralytics built-in architecture such as yolov5s.yaml
    if not path.is_file():
        raise FileNotFoundError(f"{model}: model weights not found (give a local .pt, a .yaml, or one of {', '.join(MODEL_FAMILY)})")
    return str(path)


def train_overrides(data_yaml: Path, preset: dict, project: Path, *, name: str | None, imgsz: int, epochs: int,
                    batch: int, seed: int, device: str, workers: int, typed: bool = False, patience: int = 100,
                    fraction: float = 1.0, hours: float | None = None, plots: bool = True, val: bool = True,
                    save_period: int = 0) -> dict:
    """The ultralytics training arguments for ours (``typed``: three tumor classes instead of one)."""
    overrides = {
        "data": str(data_yaml),
        "imgsz": imgsz,
        "epochs": epochs,
        "batch": batch,
        "seed": seed,
        "deterministic": True,
        "device": device,
        "workers": workers,
        "project": str(project),
        "name": name,
        "exist_ok": False,
        "single_cls": not typed,
        "patience": patience,
        "plots": plots,
        "val": val,
        "save_period": save_period,
        "verbose": True,
        "amp": device not in ("cpu", "") and not str(device).startswith("cpu"),
    }
    if hours:
        overrides["time"] = hours
    if fraction < 1.0:
        overrides["fraction"] = fraction
    overrides.update(preset["ultralytics"])
    return overrides
