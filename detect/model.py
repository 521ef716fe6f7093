"""The detector as a model: load it safely, know its input size, predict boxes. Every caller (evaluation,
proposals for the classifier, the cascade, the tools) goes through these three functions."""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path

import numpy as np

from mri.cli import resolve_path
from mri.files import write_atomic
from mri.intensity import standardise
from mri.offline import keep_torch_threads
from mri.scan_io import first_line

MAX_DETECTIONS = 100  # boxes per image kept after NMS
INPUT_KEY = "mri_input"  # checkpoint key naming the input standardisation a detector was trained with
STANDARDISED = "standardise"


def load_detector(weights: str | Path):
    """An ultralytics detector from a local file (or a training run folder: its weights/best.pt); a clear
    error instead of a download attempt.

    The file is unpickled with ``weights_only=True`` against ultralytics' allow-list of model classes, so
    a crafted .pt cannot run code: it fails with the same one-line "invalid weights" error as a corrupt one.
    """
    path = resolve_path(weights)
    if path.is_dir():
        path = path / "weights" / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{weights}: detector weights not found (train one with `python -m detect.train`)")
    from ultralytics import YOLO

    try:
        with ultralytics_safe_loading(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's notes on odd pickles; the error says enough
            model = YOLO(str(path), task="detect")
    except Exception as error:  # ultralytics raises many types for a bad checkpoint
        detail = first_line(error).replace("ERROR ❌️", "").replace(str(path), "the file").strip()
        detail = re.sub(r"\s*(Recommended fixes|Use an official).*$", "", detail)  # advice that needs the network
        raise ValueError(f"{path}: invalid weights, not a valid ultralytics detector checkpoint "
                         f"({error.__class__.__name__}: {detail})") from None
    keep_torch_threads(model)
    return model


@contextlib.contextmanager
def ultralytics_safe_loading():
    """Switch on ultralytics' restricted checkpoint loading (its ``ULTRALYTICS_SAFE_LOAD``) for a block.

    Restricted loading unpickles with ``torch.load(weights_only=True)`` and reconstructs only ultralytics'
    and torch's model classes. Without it (an older ultralytics or torch) nothing is loaded at all.
    """
    import torch
    from ultralytics.nn import tasks

    if not hasattr(tasks, "SAFE_LOAD") or not hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        raise RuntimeError("this ultralytics/torch cannot load checkpoints safely (needs ultralytics 8.4 with "
                           "ULTRALYTICS_SAFE_LOAD and torch 2.6 or newer)")
    previous = tasks.SAFE_LOAD
    tasks.SAFE_LOAD = True
    try:
        yield
    finally:
        tasks.SAFE_LOAD = previous


def trained_image_size(model, default: int = 640) -> int:
    args = getattr(model, "overrides", None) or {}
    return int(args.get("imgsz") or default)


def trained_standardised(model) -> bool:
    """Whether the detector was trained on ``mri.intensity.standardise``d slices: its checkpoint says so, or,
    for an exported detector (no checkpoint), the export metadata that ``record_input`` passed on."""
    recorded = vars(model).get(INPUT_KEY) or (getattr(model, "ckpt", None) or {}).get(INPUT_KEY)
    return recorded == STANDARDISED


def record_input(model, standardisation: str | None) -> None:
    """Tell ``trained_standardised`` what an exported detector's metadata says about its input."""
    vars(model)[INPUT_KEY] = standardisation


def checkpoint_state(checkpoint: str | Path) -> dict:
    """The dict an ultralytics checkpoint holds (model, train_args, INPUT_KEY, ...), read with restricted loading."""
    from ultralytics.nn.tasks import torch_safe_load

    with ultralytics_safe_loading():
        state, _ = torch_safe_load(str(checkpoint))
    return state


def mark_standardised(checkpoint: str | Path) -> None:
    """Record in a checkpoint that its detector was trained on standardised slices (atomically; once)."""
    import io

    import torch

    state = checkpoint_state(checkpoint)
    if state.get(INPUT_KEY) == STANDARDISED:
        return
    state[INPUT_KEY] = STANDARDISED
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(checkpoint, buffer.getvalue())


def predict_boxes(model, images: list[np.ndarray], imgsz: int, conf: float, device: str,
                  max_det: int = MAX_DETECTIONS, augment: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """Boxes (x1 y1 x2 y2, pixels, float32) and scores of each image, highest score first (class-agnostic).

    ``augment``: ultralytics' test-time augmentation (the image as is, 0.83x and flipped left-right, 0.67x;
    boxes of all three merged by NMS), about twice the detector's time; PyTorch weights only.
    """
    if trained_standardised(model):
        images = [standardise(image) for image in images]
    outputs = model.predict(images, imgsz=imgsz, conf=conf, device=device, verbose=False, max_det=max_det,
                            augment=augment)
    found = []
    for output in outputs:
        boxes = output.boxes.xyxy.cpu().numpy().astype(np.float32)
        scores = output.boxes.conf.cpu().numpy().astype(np.float32)
        order = np.argsort(-scores, kind="stable")  # NMS already sorts; callers taking a prefix rely on it
        found.append((boxes[order], scores[order]))
    return found
