"""Whether a release meets its targets, from the metrics files the evaluation tools wrote.

Each ``tools/evaluate.py`` output is one test split: its cascade must reach the mAP50 and mAP50-95 floors and,
where the split has typed boxes, the type-accuracy floor. A ``detect.val`` output (all test splits together,
single-scale) checks the detector alone against its own floors, e.g. the plain baseline's figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class MetricsError(ValueError):
    """A metrics folder that cannot be read; the message is one line naming it."""


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    floor: float

    @property
    def passed(self) -> bool:
        return self.value is not None and self.value >= self.floor

    def line(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.3f}"
        return f"{'pass' if self.passed else 'FAIL'}  {self.name}: {shown} (at least {self.floor:.3f})"


def read_metrics(folder: str | Path) -> dict:
    path = Path(folder) / "metrics.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MetricsError(f"{path}: not a readable metrics file ({type(error).__name__})") from None


def cascade_checks(folder: str | Path, map50: float, map50_95: float, type_accuracy: float | None) -> list[Check]:
    """The cascade of one ``tools/evaluate.py`` output; type accuracy only where the split has typed boxes."""
    metrics = read_metrics(folder)
    try:
        cascade, label = metrics["cascade"], f"{', '.join(metrics['data'])} {metrics['split']} cascade"
        checks = [Check(f"{label} mAP50", cascade["map50"], map50),
                  Check(f"{label} mAP50-95", cascade["map50_95"], map50_95)]
        if type_accuracy is not None and cascade["type_accuracy"] is not None:
            checks.append(Check(f"{label} type accuracy", cascade["type_accuracy"], type_accuracy))
    except (KeyError, TypeError):
        raise MetricsError(f"{Path(folder) / 'metrics.json'}: not written by tools/evaluate.py") from None
    return checks


def detector_checks(folder: str | Path, map50: float, map50_95: float) -> list[Check]:
    """The detector alone, overall, from one ``detect.val`` output."""
    try:
        coco = read_metrics(folder)["overall"]["coco"]
        return [Check("detector alone mAP50", coco["map50"], map50),
                Check("detector alone mAP50-95", coco["map50_95"], map50_95)]
    except (KeyError, TypeError):
        raise MetricsError(f"{Path(folder) / 'metrics.json'}: not written by detect.val") from None
