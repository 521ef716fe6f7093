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


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
