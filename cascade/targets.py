"""Whether a release meets its targets, from the metrics files the evaluation tools wrote.

Each ``tools/evaluate.py`` output is one test split: its cascade must reach the mAP50 and mAP50-95 floors and,
where the split has typed boxes, the type-accuracy floor. A ``detect.val`` output (all test splits together,
single-scale) checks the detector alone against its own floors, e.g. the plain baseline's figures. Only test
splits count: a validation or held-out score in the wrong folder is refused, not passed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

UNTYPED = "tumor"  # what a source that only says "tumor" labels its boxes (datasets.yaml's `untyped`)


class MetricsError(ValueError):
    """A metrics folder that cannot be used; the message is one line naming it."""


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    floor: float

    @property
    def passed(self) -> bool:
        return self.value is not None and self.value >= self.floor

    def line(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.4f}"
        if not self.passed and shown == f"{self.floor:.4f}":  # under the floor by less than the rounding
            shown = f"{self.value:.8g}"
        return f"{'pass' if self.passed else 'FAIL'}  {self.name}: {shown} (at least {self.floor:.4f})"


def read_metrics(folder: Path, writer: str) -> dict:
    """``folder``'s metrics.json, written by ``writer`` for a test split."""
    path = folder / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MetricsError(f"{path}: not a readable metrics file ({type(error).__name__})") from None
    if not isinstance(metrics, dict) or "split" not in metrics:
        raise MetricsError(f"{path}: not written by {writer}")
    if metrics["split"] != "test":
        raise MetricsError(f"{path}: scores the '{metrics['split']}' split; targets are checked on test splits")
    return metrics


def cascade_checks(folder: Path, map50: float, map50_95: float, type_accuracy: float | None) -> list[Check]:
    """The cascade of one ``tools/evaluate.py`` output; type accuracy where the split has typed boxes (then a
    missing figure fails: an untyped cascade has not met a type target)."""
    metrics = read_metrics(folder, "tools/evaluate.py")
    try:
        cascade, label = metrics["cascade"], f"{', '.join(metrics['data'])} {metrics['split']} cascade"
        checks = [Check(f"{label} mAP50", cascade["map50"], map50),
                  Check(f"{label} mAP50-95", cascade["map50_95"], map50_95)]
        typed = any(kind != UNTYPED for kind in cascade["by_type"])
    except (KeyError, TypeError):
        raise MetricsError(f"{folder / 'metrics.json'}: not written by tools/evaluate.py") from None
    if type_accuracy is not None and typed:
        checks.append(Check(f"{label} type accuracy", cascade.get("type_accuracy"), type_accuracy))
    return checks


def detector_checks(folder: Path, map50: float, map50_95: float) -> list[Check]:
    """The detector alone, overall, from one ``detect.val`` output."""
    metrics = read_metrics(folder, "detect.val")
    try:
        coco = metrics["overall"]["coco"]
        label = f"detector alone ({Path(str(metrics['weights'])).name}, single-scale, all test splits)"
        return [Check(f"{label} mAP50", coco["map50"], map50), Check(f"{label} mAP50-95", coco["map50_95"], map50_95)]
    except (KeyError, TypeError):
        raise MetricsError(f"{folder / 'metrics.json'}: not written by detect.val") from None
