"""Named augmentation presets for the detector: ``detect/hyp/<name>.yaml``."""

from __future__ import annotations

from pathlib import Path

import yaml

HYP_DIR = Path(__file__).resolve().parent / "hyp"


def preset_names() -> list[str]:
    return sorted(p.stem for p in HYP_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict:
    """The preset ``name`` (or a path to a YAML file of the same shape) as {'ultralytics': .., 'intensity': ..}."""
    path = Path(name)
    if not path.suffix:
        path = HYP_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown augmentation preset '{name}' (known: {', '.join(preset_names())}, or a .yaml path)")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = set(raw) - {"ultralytics", "intensity"}
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} (use 'ultralytics' and 'intensity')")
    return {"ultralytics": dict(raw.get("ultralytics") or {}), "intensity": dict(raw.get("intensity") or {})}
