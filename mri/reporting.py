"""Small pieces every benchmark and report shares: number formatting, the machine line, the date."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone


def fmt(value, digits: int = 3) -> str:
    """A metric for a Markdown table; 'n/a' where it is undefined."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def machine(device: str = "cpu") -> str:
    cores = f"{platform.machine()}, {os.cpu_count()} cores"
    return f"{cores}, no GPU" if device == "cpu" else f"{cores}, device {device}"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
