"""Writing outputs safely: atomic file writes and run folders that never replace an earlier run."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path

import yaml
from filelock import FileLock


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_process_umask()  # what open() would give; read once, at import, before any thread starts


def write_atomic(path: str | Path, data: str | bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers never see half a file.

    Text is written as UTF-8; undecodable bytes of file names in it become ``\\xNN`` (see ``printable``).
    The temporary file is removed when writing fails. ``overwrite=False``: FileExistsError if ``path`` exists
    by the time the file is complete (a hard link, which unlike a rename never replaces).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data if isinstance(data, bytes) else _utf8_safe(data).encode("utf-8")
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        try:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), _FILE_MODE)  # a temporary file is owner-only; the result is an ordinary file
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    if overwrite:
        os.replace(handle.name, path)
        return path
    try:
        os.link(handle.name, path)
    finally:
        os.unlink(handle.name)
    return path


@contextlib.contextmanager
def lock_if_writable(path: str | Path):
    """Hold an inter-process lock at ``path`` (runs started together take turns), or none where the folder cannot
    be written: nothing is written there then either, so there is nothing to take turns for."""
    lock = FileLock(path)
    try:
        lock.acquire()
    except OSError:  # a read-only mount, another user's folder or lock file
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters shown as escapes, so it prints as one line."""
    return text.translate(_CONTROL_ESCAPES) if any(ord(ch) < 32 or ord(ch) == 127 for ch in text) else text


_CONTROL_ESCAPES = {code: repr(chr(code))[1:-1] for code in [*range(32), 127]}


def printable(text: str) -> str:
    """``text`` safe to write or print as UTF-8, on one line.

    File names that are not valid UTF-8 (common on shares written by old scanners) reach Python with their
    odd bytes as lone surrogates; those bytes are shown as ``\\xNN`` (``bad_\\xff.jpg``), as are line
    breaks and other control characters in a name.
    """
    return _utf8_safe(one_line(text))


def _utf8_safe(text: str) -> str:
    """``text`` with lone surrogates (undecodable file-name bytes) shown as ``\\xNN``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that did not come from a file name
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write_json(path: str | Path, payload) -> Path:
    return write_atomic(path, json.dumps(payload, indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_yaml(path: str | Path, payload) -> Path:
    return write_atomic(path, yaml.safe_dump(_plain(payload), sort_keys=False))


def write_csv(path: str | Path, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    fieldnames = fieldnames or (list(rows[0]) if rows else [])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, buffer.getvalue())


class OutputError(ValueError):
    """An output folder that cannot be made there (a file in the way, no permission): one line saying where."""


def new_run_dir(parent: str | Path, name: str) -> Path:
    """Create and return ``parent/name``, or ``name-2``, ``name-3``... when it exists: runs never mix."""
    parent = Path(parent)
    _make_folder(parent)
    for attempt in range(1, 10_000):
        candidate = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            candidate.mkdir()
            return candidate.resolve()
        except FileExistsError:
            continue
        except OSError as error:
            raise OutputError(f"{candidate}: cannot create the output folder ({error.strerror})") from None
    raise OutputError(f"{parent}: too many runs named '{name}'")


def output_dir(wanted: str | Path) -> Path:
    """The folder a user asked for with ``--out``: ``wanted`` if it is new or empty, else a new sibling
    ``wanted-2``, ``wanted-3``...: an earlier result is never overwritten or mixed with a new one."""
    wanted = Path(wanted)
    if wanted.is_dir() and not any(wanted.iterdir()):
        return wanted.resolve()
    if wanted.exists():  # a non-empty folder, or a file of that name: both stay as they are
        return new_run_dir(wanted.parent, wanted.name)
    _make_folder(wanted)
    return wanted.resolve()


def _make_folder(folder: Path) -> None:
    """``mkdir -p`` with a one-line ``OutputError`` naming the file that is in the way."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise OutputError(f"{folder}: cannot create the output folder, {blocker} is a file") from None
    except OSError as error:
        raise OutputError(f"{folder}: cannot create the output folder ({error.strerror})") from None


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _plain(value):
    """Arguments and configs as YAML-safe builtins (paths as strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return value
