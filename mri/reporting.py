"""Small pieces every benchmark and report shares: number formatting, the machine line, the date."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone


def fmt(value, digits: int = 3) -> str:
    """A metric for a Markdown table; 'n/a' where it is undefined."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def fmt_interval(interval, digits: int = 3) -> str:
    """A [low, high] interval for a Markdown table or a log line; 'n/a' where it is undefined."""
    return "n/a" if interval is None else f"{interval[0]:.{digits}f}-{interval[1]:.{digits}f}"


def machine(device: str = "cpu") -> str:
    cores = f"{platform.machine()}, {os.cpu_count()} cores"
    return f"{cores}, no GPU" if device == "cpu" else f"{cores}, device {device}{_gpu_name(device)}"


def _gpu_name(device: str) -> str:
    """' (NAME)' of the first CUDA device in ``device`` ('0', '0,1', 'cuda', 'cuda:1'), so a report says which GPU
    it ran on; '' when there is none to ask."""
    first = str(device).split(",")[0].removeprefix("cuda").removeprefix(":") or "0"
    try:
        import torch

        return f" ({torch.cuda.get_device_name(int(first))})" if torch.cuda.is_available() else ""
    except Exception:  # a name for a report is never worth failing the measurement it labels
        return ""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def output_folder(out: str | None, name: str):
    """``out`` (created; a sibling ``out-2``... if it already holds files), or a new runs/bench/<name>."""
    from mri.cli import resolve_path
    from mri.files import new_run_dir, output_dir
    from mri.offline import RUNS_DIR

    if out is None:
        return new_run_dir(RUNS_DIR / "bench", name)
    return output_dir(resolve_path(out))
