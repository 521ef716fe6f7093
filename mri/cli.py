"""Small helpers shared by the command-line entry points."""

from __future__ import annotations

import random
from pathlib import Path

from mri import PROJECT_ROOT


def resolve_path(path: str | Path) -> Path:
    """An absolute path as given, or a relative one resolved against the project root.

    Entry points never depend on the directory they are started from: ``runs/x`` means the project's
    ``runs/x`` wherever the command runs. A path that exists relative to the current directory wins,
    so ``--source ./scans`` typed in another folder still finds the user's scans.
    """
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    if path.exists():
        return path.resolve()
    return (PROJECT_ROOT / path).resolve()


class DeviceError(ValueError):
    """A ``--device`` this machine does not have: one line instead of ultralytics' or torch's page."""


def check_device(device: str | int | None) -> None:
    """Refuse a device that is not there: ``cpu``, ``cuda``, ``N``, ``cuda:N`` or ``N,M,...`` (CUDA GPUs)."""
    text = str(device if device is not None else "cpu").strip().lower()
    if text in ("", "cpu"):
        return
    import torch

    if text == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError("--device mps: Apple's MPS is not available on this machine (use --device cpu)")
        return
    ids = ["0"] if text == "cuda" else text.removeprefix("cuda:").split(",")
    if not all(i.strip().isdigit() for i in ids):
        raise DeviceError(f"--device {device}: expected cpu, a GPU number (0), several (0,1) or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise DeviceError(f"--device {device}: no CUDA GPU is available on this machine (use --device cpu)")
    missing = [i.strip() for i in ids if int(i) >= count]
    if missing:
        raise DeviceError(f"--device {device}: no GPU {', '.join(missing)} here (this machine has GPU 0..{count - 1})")


def torch_device(device: str | int | None):
    """The ``torch.device`` for a ``--device`` value (``cpu`` wherever CUDA is absent)."""
    import torch

    text = str(device if device is not None else "cpu")
    if text == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(f"cuda:{text}" if text.isdigit() else text)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
