"""Read any scan a user has (JPEG/PNG, DICOM, NIfTI) into normalised 8-bit slices with metadata.

``read_scan(path)`` is the only way the project reads an image. Every slice comes back as an 8-bit,
three-channel BGR array (OpenCV and ultralytics order; the channels are equal for grayscale scans), so
the detector and the classifier always see the same kind of input whatever the file was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}
NIFTI_SUFFIXES = {".nii", ".nii.gz"}
MAX_PIXELS = 12_000 * 12_000  # larger than any MRI slice; guards against decompression bombs


class ScanReadError(ValueError):
    """A file that cannot be read as a scan. ``str()`` is one line: the file, then the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class Scan:
    image: np.ndarray  # uint8, H x W x 3, BGR
    path: str
    slice_index: int | None = None  # position along the sliced axis for volumes and multi-frame files
    pixel_spacing: tuple[float, float] | None = None  # mm per pixel (row, column) where the file says
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A file-system-safe name for outputs derived from this slice."""
        stem = scan_stem(self.path)
        return stem if self.slice_index is None else f"{stem}_s{self.slice_index:04d}"


def scan_stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in sorted(IMAGE_SUFFIXES | DICOM_SUFFIXES | NIFTI_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def scan_kind(path: str | Path) -> str | None:
    """'image', 'dicom', 'nifti' by file name, or None when the name says nothing we read."""
    name = str(path).lower()
    if name.endswith(".nii.gz") or name.endswith(".nii"):
        return "nifti"
    suffix = Path(name).suffix
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    return None


def read_scan(path: str | Path, *, axis: int = 2, slice_index: int | None = None) -> list[Scan]:
    """Read a 2D image, a DICOM file or a NIfTI volume into a list of normalised slices.

    ``axis`` picks the slicing axis of a volume in RAS+ orientation (0 sagittal, 1 coronal, 2 axial);
    ``slice_index`` picks one slice, otherwise every slice comes back. Raises ``ScanReadError`` naming
    the file for anything missing, empty, corrupt, too large or of an unsupported kind.
    """
    path = Path(path)
    if not path.is_file():
        raise ScanReadError(path, "no such file")
    if path.stat().st_size == 0:
        raise ScanReadError(path, "empty file (0 bytes)")
    kind = scan_kind(path) or ("dicom" if _has_dicom_preamble(path) else None)
    if kind == "image":
        return [_select(_read_image(path), slice_index, path)]
    if kind == "dicom":
        return _pick_slices(_read_dicom(path), slice_index, path)
    if kind == "nifti":
        return _read_nifti(path, axis, slice_index)
    raise ScanReadError(path, "unsupported file type (expected JPEG/PNG/BMP/TIFF, DICOM or NIfTI)")


def _select(scan: Scan, slice_index: int | None, path: Path) -> Scan:
    if slice_index not in (None, 0):
        raise ScanReadError(path, f"slice {slice_index} requested from a 2D image")
    return scan


def _pick_slices(scans: list[Scan], slice_index: int | None, path: Path) -> list[Scan]:
    if slice_index is None:
        return scans
    if not 0 <= slice_index < len(scans):
        raise ScanReadError(path, f"slice {slice_index} out of range (0..{len(scans) - 1})")
    return [scans[slice_index]]


def _has_dicom_preamble(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def to_uint8(pixels: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Window ``pixels`` to [low, high] (default: the 0.5th and 99.5th percentiles) and scale to 0..255."""
    pixels = np.asarray(pixels, dtype=np.float32)
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        return np.zeros(pixels.shape, np.uint8)
    if low is None or high is None:
        low, high = np.percentile(finite, [0.5, 99.5])
    if high <= low:
        high = low + 1.0
    scaled = (np.nan_to_num(pixels, nan=low) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).round().astype(np.uint8)


def as_bgr(gray_or_color: np.ndarray) -> np.ndarray:
    if gray_or_color.ndim == 2:
        return np.repeat(gray_or_color[:, :, None], 3, axis=2)
    return np.ascontiguousarray(gray_or_color)


def _read_image(path: Path) -> Scan:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ScanReadError(path, f"image too large ({img.width}x{img.height} pixels)")
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                pixels = to_uint8(np.asarray(img))
                return Scan(as_bgr(pixels), str(path), meta={"mode": mode})
            if mode in ("L", "1"):
                return Scan(as_bgr(np.asarray(img.convert("L"))), str(path), meta={"mode": mode})
            rgb = np.asarray(img.convert("RGB"))
    except ScanReadError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, ImportError) as error:
        # ImportError: ultralytics patches Image.open to import the optional pi-heif on unknown files.
        raise ScanReadError(path, f"not a readable image ({error.__class__.__name__})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ScanReadError(path, f"corrupt or truncated image ({error})") from None
    return Scan(np.ascontiguousarray(rgb[:, :, ::-1]), str(path), meta={"mode": mode})


def _dicom_window(dataset, pixels: np.ndarray) -> tuple[float | None, float | None]:
    center, width = getattr(dataset, "WindowCenter", None), getattr(dataset, "WindowWidth", None)
    if center is None or width is None:
        return None, None
    first = lambda value: float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)  # noqa: E731
    try:
        center, width = first(center), first(width)
    except (TypeError, ValueError):
        return None, None
    if not math.isfinite(center) or not math.isfinite(width) or width <= 1:
        return None, None
    return center - width / 2, center + width / 2


def _read_dicom(path: Path) -> list[Scan]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    except InvalidDicomError as error:
        raise ScanReadError(path, f"not a valid DICOM file ({error})") from None
    except AttributeError:
        raise ScanReadError(path, "DICOM file has no pixel data") from None
    except Exception as error:  # pydicom raises many types for broken pixel data
        raise ScanReadError(path, f"unreadable DICOM pixel data ({error})") from None

    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    is_color = photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") and pixels.shape[-1] == 3
    volume = pixels if (frames > 1) else pixels[None]
    spacing = getattr(dataset, "PixelSpacing", None)
    spacing = (float(spacing[0]), float(spacing[1])) if spacing is not None else None
    meta = {"modality": str(getattr(dataset, "Modality", "")), "photometric": photometric}

    if is_color:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            volume = np.stack([convert_color_space(f, photometric, "RGB") for f in volume])
        images = [np.ascontiguousarray(to_uint8(f, 0, 255)[:, :, ::-1]) for f in volume]
    else:
        slope = float(getattr(dataset, "RescaleSlope", 1) or 1)
        intercept = float(getattr(dataset, "RescaleIntercept", 0) or 0)
        values = volume.astype(np.float32) * slope + intercept
        low, high = _dicom_window(dataset, values)
        gray = to_uint8(values, low, high)
        if photometric == "MONOCHROME1":
            gray = 255 - gray
        images = [as_bgr(g) for g in gray]
    multi = len(images) > 1
    return [
        Scan(image, str(path), i if multi else None, spacing, dict(meta))
        for i, image in enumerate(images)
    ]


def _read_nifti(path: Path, axis: int, slice_index: int | None) -> list[Scan]:
    import nibabel as nib

    if axis not in (0, 1, 2):
        raise ScanReadError(path, f"axis must be 0, 1 or 2, not {axis}")
    try:
        volume_img = nib.as_closest_canonical(nib.load(str(path)))
        volume = np.asanyarray(volume_img.dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises many types for broken files
        raise ScanReadError(path, f"not a readable NIfTI volume ({error})") from None
    if volume.ndim == 4:
        volume = volume[..., 0]
    if volume.ndim == 2:
        volume = volume[:, :, None]
    if volume.ndim != 3:
        raise ScanReadError(path, f"expected a 3D volume, got shape {volume.shape}")
    count = volume.shape[axis]
    indices = range(count) if slice_index is None else [slice_index]
    if slice_index is not None and not 0 <= slice_index < count:
        raise ScanReadError(path, f"slice {slice_index} out of range (0..{count - 1}) on axis {axis}")
    low, high = np.percentile(volume[np.isfinite(volume)], [0.5, 99.5]) if volume.size else (0, 1)
    zooms = volume_img.header.get_zooms()[:3]
    in_plane = [zooms[i] for i in range(3) if i != axis]
    scans = []
    for index in indices:
        plane = np.take(volume, index, axis=axis)
        # RAS+ arrays put the first in-plane axis left-to-right; rotating shows anterior/superior up.
        plane = np.rot90(plane)
        spacing = (float(in_plane[1]), float(in_plane[0]))
        image = as_bgr(to_uint8(plane, low, high))
        scans.append(Scan(image, str(path), index, spacing, {"axis": axis, "shape": list(volume.shape)}))
    return scans
