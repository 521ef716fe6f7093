"""Turn what a user points at (a file, a folder, a glob, a DICOM series, a NIfTI volume) into scans.

``iter_scans`` yields ``(scan, None)`` for every readable slice and ``(None, Skipped)`` for every file it
could not read, so a batch always goes on with the rest.
"""

from __future__ import annotations

import errno
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mri import PROJECT_ROOT
from mri.cli import resolve_path
from mri.scan_io import Scan, ScanReadError, first_line, has_dicom_preamble, read_scan, scan_kind


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
    """Every candidate file under ``source`` (a file, a folder searched recursively, or a glob), sorted.

    Links that lead to no file (broken, looping, or to a folder) are listed too, so that ``iter_scans``
    reports them as skipped instead of dropping them silently.
    """
    if not str(source).strip():
        raise SourceError("the source is empty: give a scan, a folder, a glob, a DICOM series or a NIfTI volume")
    path = resolve_path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if _is_candidate(p) and not _is_hidden(p.relative_to(path)))
        if not files:
            raise SourceError(f"{source}: folder has no files")
        return files
    if path.is_symlink():
        raise SourceError(f"{source}: {link_problem(path)}")
    if any(ch in source for ch in "*?["):
        pattern = os.path.expanduser(source)
        files = _matching(pattern)
        if not files and not os.path.isabs(pattern):  # the path rule: else below the project root
            files = _matching(str(PROJECT_ROOT / pattern))
        if not files:
            raise SourceError(f"{source}: pattern matches no files")
        return files
    raise SourceError(f"{source}: no such file or folder")


def _matching(pattern: str) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if _is_candidate(Path(p)))


def _is_candidate(path: Path) -> bool:
    return path.is_file() or path.is_symlink()


def link_problem(path: Path) -> str:
    """Why a symbolic link gives no file: a loop, a missing target, or a folder (links to folders are not followed)."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop (following it never reaches a file)"
        if error.errno == errno.ENOENT:
            return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
        return f"unreadable symbolic link ({error.strerror})"
    if path.is_dir():
        return "symbolic link to a folder (not followed inside a folder; give that folder as the source)"
    return "symbolic link to something that is not a file"


def iter_scans(source: str, axis: int = 2, slice_index: int | None = None) -> Iterator[tuple[Scan | None, Skipped | None]]:
    """``(scan, None)`` per readable slice, ``(None, Skipped)`` per file that is not; ``SourceError`` at once."""
    return _scans_of(list_files(source), axis, slice_index)


def _scans_of(files: list[Path], axis: int, slice_index: int | None) -> Iterator[tuple[Scan | None, Skipped | None]]:
    for path in files:
        if path.is_symlink() and not path.is_file():
            yield None, Skipped(str(path), link_problem(path))
            continue
        if scan_kind(path) is None and not _looks_like_dicom(path):
            yield None, Skipped(str(path), "unsupported file type (expected JPEG/PNG/BMP/TIFF, DICOM or NIfTI)")
            continue
        try:
            scans = read_scan(path, axis=axis, slice_index=slice_index)
        except ScanReadError as error:
            yield None, Skipped(error.path, error.reason)
            continue
        except Exception as error:  # a reader bug must not cost the rest of the batch; the reason says so
            yield None, Skipped(str(path), f"unexpected error while reading ({error.__class__.__name__}: "
                                          f"{first_line(error)}); please report it")
            continue
        for scan in scans:
            yield scan, None


def _looks_like_dicom(path: Path) -> bool:
    try:
        return has_dicom_preamble(path)
    except OSError:
        return False


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
