"""Turn what a user points at (a file, a folder, a glob, a DICOM series, a NIfTI volume) into scans.

``iter_scans`` yields ``(scan, None)`` for every readable slice and ``(None, Skipped)`` for every file it
could not read, so a batch always goes on with the rest.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mri.scan_io import Scan, ScanReadError, read_scan, scan_kind


@dataclass
class Skipped:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class SourceError(ValueError):
    """The source itself is unusable: it does not exist, or holds no files at all."""


def _is_hidden(path: Path) -> bool:
    return any(part.startswith(".") for part in path.parts if part not in (".", ".."))


def list_files(source: str) -> list[Path]:
    """Every candidate file under ``source`` (a file, a folder searched recursively, or a glob), sorted."""
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not _is_hidden(p.relative_to(path)))
        if not files:
            raise SourceError(f"{source}: folder has no files")
        return files
    if any(ch in source for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(source), recursive=True) if Path(p).is_file())
        if not files:
            raise SourceError(f"{source}: pattern matches no files")
        return files
    raise SourceError(f"{source}: no such file or folder")


def iter_scans(source: str, axis: int = 2, slice_index: int | None = None) -> Iterator[tuple[Scan | None, Skipped | None]]:
    for path in list_files(source):
        if scan_kind(path) is None and not _looks_like_dicom(path):
            yield None, Skipped(str(path), "unsupported file type (expected JPEG/PNG/BMP/TIFF, DICOM or NIfTI)")
            continue
        try:
            scans = read_scan(path, axis=axis, slice_index=slice_index)
        except ScanReadError as error:
            yield None, Skipped(error.path, error.reason)
            continue
        for scan in scans:
            yield scan, None


def _looks_like_dicom(path: Path) -> bool:
    """DICOM series often come as extension-less files with the 'DICM' marker at byte 128."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def output_stem(scan: Scan, source: str) -> str:
    """A unique, file-system-safe name for a slice's outputs: its path below the source, flattened."""
    path = Path(scan.path)
    root = Path(source).expanduser()
    try:
        relative = path.resolve().relative_to(root.resolve()) if root.is_dir() else Path(path.name)
    except ValueError:
        relative = Path(path.name)
    stem = "__".join(relative.with_name(scan.name).parts) if relative.parent != Path(".") else scan.name
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)
