"""Named augmentation presets for the detector: ``detect/hyp/<name>.yaml``."""

from __future__ import annotations

from pathlib import Path

import yaml

HYP_DIR = Path(__file__).resolve().parent / "hyp"
SECTIONS = ("ultralytics", "intensity", "input")


def preset_names() -> list[str]:
    return sorted(p.stem for p in HYP_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict:
    """The preset ``name`` (or a path to a YAML file of the same shape) as {'ultralytics': .., 'intensity': ..,
    'input': ..}: ultralytics' own augmentation settings, the MRI intensity block, and the input
    standardisation (``input: {standardise: true}``) that training and inference then share."""
    path = Path(name)
    if not path.suffix:
        path = HYP_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown augmentation preset '{name}' (known: {', '.join(preset_names())}, or a .yaml path)")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} (use {', '.join(SECTIONS)})")
    preset = {section: dict(raw.get(section) or {}) for section in SECTIONS}
    if set(preset["input"]) - {"standardise"}:
        raise ValueError(f"{path}: the 'input' section takes only 'standardise: true|false'")
    return preset
