"""Classifier checkpoints: a plain dict with the weights and everything inference needs.

Keys: ``model`` (state dict), ``arch``, ``classes`` (output order: no tumor, then types), ``input_size``,
``mean``/``std`` (RGB, 0-1 scale), ``crop_rule`` (see ``classify.crops.CropRule``), ``thresholds`` (on
P(tumor), calibrated on validation: absent until a run finishes, and inference refuses a checkpoint without
them), ``epoch``, ``args``, ``history``, ``metrics``; training checkpoints also carry ``optimizer`` and
``scheduler`` for ``--resume``. Only tensors and plain Python values are stored, so
``torch.load(..., weights_only=True)`` reads it.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from classify.crops import CropRule
from classify.models import create_classifier
from mri.files import write_atomic

REQUIRED = ("model", "arch", "classes", "input_size", "mean", "std", "crop_rule")


class CheckpointError(ValueError):
    """A classifier checkpoint that is missing, unreadable or incomplete (one line, naming the file)."""


def save_checkpoint(path: str | Path, checkpoint: dict, half: bool = False) -> Path:
    """Write atomically; ``half`` stores floating-point weights as fp16 (for shipping)."""
    if half:
        checkpoint = {**checkpoint, "model": {k: v.half() if v.is_floating_point() else v for k, v in checkpoint["model"].items()}}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return write_atomic(path, buffer.getvalue())


def load_checkpoint(path: str | Path, calibrated: bool = True) -> dict:
    """Read a checkpoint; ``calibrated`` (inference) also refuses one whose thresholds were never calibrated,
    as an interrupted run leaves its best.pt and last.pt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: classifier weights not found (train one with `python -m classify.train`)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"{path}: not a readable classifier checkpoint ({error.__class__.__name__})") from None
    missing = [key for key in REQUIRED if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: not a classifier checkpoint of this project (missing: {', '.join(missing)})")
    if calibrated and not checkpoint.get("thresholds"):
        raise CheckpointError(f"{path}: no calibrated decision threshold (its training did not finish); finish it with "
                              f"`python -m classify.train --resume {path}` or calibrate it with "
                              f"`python -m classify.val --weights {path} --calibrate`")
    return checkpoint


def model_from_checkpoint(checkpoint: dict, device: str = "cpu") -> torch.nn.Module:
    """The network in evaluation mode, channels-last (what ``classify.predict`` runs fastest)."""
    model = create_classifier(checkpoint["arch"], len(checkpoint["classes"]), checkpoint["input_size"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in checkpoint["model"].items()}
    model.load_state_dict(state)
    return model.to(device, memory_format=torch.channels_last).eval()


def crop_rule_of(checkpoint: dict) -> CropRule:
    return CropRule.from_dict(checkpoint["crop_rule"])
