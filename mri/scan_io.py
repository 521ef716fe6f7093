"""Read any scan a user has (JPEG/PNG, DICOM, NIfTI) into normalised 8-bit slices with metadata.

``read_scan(path)`` is the only way the project reads an image. Every slice comes back as an 8-bit,
three-channel BGR array (OpenCV and ultralytics order; the channels are equal for grayscale scans), so
the detector and the classifier always see the same kind of input whatever the file was.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mri.files import one_line

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}
NIFTI_SUFFIXES = {".nii", ".nii.gz"}
MAX_PIXELS = 12_000 * 12_000  # larger than any MRI slice; guards against decompression bombs
MAX_VOLUME_VOXELS = 512 * 512 * 512  # largest volume (or DICOM multi-frame) read whole: 0.5 GB as float32
WINDOW_SAMPLE_VOXELS = 256 * 256 * 256  # voxels of a volume sampled for its intensity window


class ScanReadError(ValueError):
    """A file that cannot be read as a scan. ``str()`` is one line: the file, then the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = one_line(reason)
        super().__init__(f"{one_line(self.path)}: {self.reason}")


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
    try:
        if not path.is_file():
            raise ScanReadError(path, "no such file")
        if path.stat().st_size == 0:
            raise ScanReadError(path, "empty file (0 bytes)")
        kind = scan_kind(path) or ("dicom" if has_dicom_preamble(path) else None)
        open(path, "rb").close()  # unreadable (permissions) says so, not "corrupt"
    except OSError as error:
        raise ScanReadError(path, f"cannot read the file ({error.strerror or error.__class__.__name__})") from None
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


def has_dicom_preamble(path: Path) -> bool:
    """DICOM series often come as extension-less files with the 'DICM' marker at byte 128."""
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
    low, high = float(low), float(high)
    if not high - low > 0:  # a flat window, also where low + 1 rounds back to low (huge values)
        high = low + max(1.0, abs(low) * 1e-6)
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
    except Exception as error:  # Pillow's decoders raise many types for corrupt or truncated data
        raise ScanReadError(path, f"corrupt or truncated image ({first_line(error)})") from None
    return Scan(np.ascontiguousarray(rgb[:, :, ::-1]), str(path), meta={"mode": mode})


def _dicom_window(dataset, pixels: np.ndarray) -> tuple[float | None, float | None]:
    first = lambda value: float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)  # noqa: E731
    try:
        center, width = getattr(dataset, "WindowCenter", None), getattr(dataset, "WindowWidth", None)
        if center is None or width is None:
            return None, None
        center, width = first(center), first(width)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None, None  # an unusable window in the header: fall back to the percentile window
    if not math.isfinite(center) or not math.isfinite(width) or width <= 1:
        return None, None
    return center - width / 2, center + width / 2


def _read_dicom(path: Path) -> list[Scan]:
    # pydicom warns (several lines) about each invalid value; the one-line error or a null spacing says it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _read_dicom_quietly(path)


def _read_dicom_quietly(path: Path) -> list[Scan]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path)
    except InvalidDicomError as error:
        raise ScanReadError(path, f"not a valid DICOM file ({first_line(error)})") from None
    except Exception as error:  # pydicom raises many types for broken headers
        raise ScanReadError(path, f"not a valid DICOM file ({error.__class__.__name__}: {first_line(error)})") from None
    rows, columns = _header_number(dataset, "Rows", 0, path), _header_number(dataset, "Columns", 0, path)
    frames = int(_header_number(dataset, "NumberOfFrames", 1, path) or 1)
    if rows * columns > MAX_PIXELS or rows * columns * frames > MAX_VOLUME_VOXELS:
        raise ScanReadError(path, f"DICOM image too large ({frames} frame(s) of {int(columns)}x{int(rows)} pixels)")
    slope = _header_number(dataset, "RescaleSlope", 1, path) or 1.0
    intercept = _header_number(dataset, "RescaleIntercept", 0, path)
    try:
        pixels = dataset.pixel_array
    except AttributeError:
        raise ScanReadError(path, "DICOM file has no pixel data") from None
    except MemoryError:
        raise ScanReadError(path, "not enough memory to decode this DICOM file") from None
    except Exception as error:  # pydicom raises many types for broken pixel data
        raise ScanReadError(path, f"unreadable DICOM pixel data ({first_line(error)})") from None

    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).upper()
    is_color = photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") and pixels.shape[-1] == 3
    volume = pixels if (frames > 1) else pixels[None]
    meta = {"modality": str(getattr(dataset, "Modality", "")), "photometric": photometric}

    try:
        if is_color:
            if photometric.startswith("YBR"):
                from pydicom.pixels import convert_color_space

                volume = np.stack([convert_color_space(f, photometric, "RGB") for f in volume])
            images = [np.ascontiguousarray(to_uint8(f, 0, 255)[:, :, ::-1]) for f in volume]
        else:
            values = volume.astype(np.float32) * slope + intercept
            low, high = _dicom_window(dataset, values)
            gray = to_uint8(values, low, high)
            if photometric == "MONOCHROME1":
                gray = 255 - gray
            images = [as_bgr(g) for g in gray]
    except (ValueError, TypeError, IndexError) as error:
        raise ScanReadError(path, f"DICOM pixel data does not match its header ({first_line(error)})") from None
    if not images or any(image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape for image in images):
        raise ScanReadError(path, f"DICOM pixel data has an unexpected shape {pixels.shape}")
    spacing = _pixel_spacing(dataset)
    multi = len(images) > 1
    return [
        Scan(image, str(path), i if multi else None, spacing, dict(meta))
        for i, image in enumerate(images)
    ]


def _header_number(dataset, keyword: str, default: float, path: Path) -> float:
    """A numeric DICOM header value (the first of several); one-line ``ScanReadError`` when it is not a number."""
    value = None
    try:
        value = getattr(dataset, keyword, None)
        if value is None or value == "":
            return default
        if hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
            value = value[0]
        number = float(value)
    except (ValueError, TypeError, IndexError, OverflowError, AttributeError):
        raise ScanReadError(path, f"DICOM header {keyword} is not a number ({str(value)[:40]!r})") from None
    if not math.isfinite(number):
        raise ScanReadError(path, f"DICOM header {keyword} is not a finite number ({number})")
    return number


def _pixel_spacing(dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm; None when the header has none or it is malformed (it only informs)."""
    try:
        spacing = getattr(dataset, "PixelSpacing", None)
        if spacing is None or isinstance(spacing, (str, bytes)) or len(spacing) != 2:
            return None
        row, column = float(spacing[0]), float(spacing[1])
    except (ValueError, TypeError, IndexError, OverflowError, AttributeError):
        return None
    return (row, column) if math.isfinite(row) and math.isfinite(column) and row > 0 and column > 0 else None


def _read_nifti(path: Path, axis: int, slice_index: int | None) -> list[Scan]:
    """Slices of a NIfTI volume in RAS+ orientation, reading from the file only the voxels needed.

    ``nib.as_closest_canonical`` would load the whole volume; instead each wanted slice is mapped back to
    the file's own axis and read through nibabel's lazy ``dataobj`` slicing, then reoriented.
    """
    import nibabel as nib

    if axis not in (0, 1, 2):
        raise ScanReadError(path, f"axis must be 0, 1 or 2, not {axis}")
    try:
        volume_img = nib.load(str(path))
        shape = tuple(int(n) for n in volume_img.shape)
        ornt = nib.orientations.io_orientation(volume_img.affine)
        zooms = [float(z) for z in volume_img.header.get_zooms()[:3]]
    except Exception as error:  # nibabel raises many types for broken files
        raise ScanReadError(path, f"not a readable NIfTI volume ({first_line(error)})") from None
    if len(shape) not in (2, 3, 4) or min(shape) < 1:
        raise ScanReadError(path, f"expected a 3D volume, got shape {shape}")
    if len(shape) == 2:
        shape, zooms = (*shape, 1), [*zooms[:2], 1.0]
    zooms = (zooms + [1.0, 1.0, 1.0])[:3]
    if not np.isfinite(ornt).all():
        raise ScanReadError(path, "the file's affine gives no usable orientation")
    file_axis = int(np.flatnonzero(ornt[:, 0] == axis)[0])  # the file's axis that becomes RAS axis ``axis``
    count = shape[file_axis]
    if slice_index is not None and not 0 <= slice_index < count:
        raise ScanReadError(path, f"slice {slice_index} out of range (0..{count - 1}) on axis {axis}")
    voxels = math.prod(shape[:3])
    if max(voxels // n for n in shape[:3]) > MAX_PIXELS:
        raise ScanReadError(path, f"slices too large ({'x'.join(map(str, shape[:3]))} voxels)")
    if slice_index is None and voxels > MAX_VOLUME_VOXELS:
        raise ScanReadError(path, f"volume too large to read whole ({'x'.join(map(str, shape[:3]))} = {voxels:,} voxels, "
                                  f"limit {MAX_VOLUME_VOXELS:,}); pick one slice (--slice)")
    canonical_shape = [0, 0, 0]
    canonical_zooms = [1.0, 1.0, 1.0]
    for i in range(3):
        canonical_shape[int(ornt[i, 0])], canonical_zooms[int(ornt[i, 0])] = shape[i], zooms[i]
    try:
        window_sample = (slice(None), slice(None), slice(None, None, _window_step(shape)))
        if slice_index is None:
            slab = _nifti_voxels(volume_img, shape, (slice(None),) * 3)
            low, high = _window(slab[window_sample])
            indices = range(count)
        else:
            low, high = _window(_nifti_voxels(volume_img, shape, window_sample))
            file_index = slice_index if ornt[file_axis, 1] > 0 else count - 1 - slice_index
            region = tuple(slice(file_index, file_index + 1) if i == file_axis else slice(None) for i in range(3))
            slab = _nifti_voxels(volume_img, shape, region)
            indices = [slice_index]
    except ScanReadError:
        raise
    except MemoryError:
        raise ScanReadError(path, "not enough memory to read this volume") from None
    except Exception as error:
        raise ScanReadError(path, f"not a readable NIfTI volume ({first_line(error)})") from None
    if low is None:
        raise ScanReadError(path, "volume has no finite voxel values (all NaN or infinite)")
    slab = nib.orientations.apply_orientation(slab, ornt)
    in_plane = [canonical_zooms[i] for i in range(3) if i != axis]
    meta = {"axis": axis, "shape": canonical_shape}
    scans = []
    for position, index in enumerate(indices):
        plane = np.take(slab, position, axis=axis)
        # RAS+ arrays put the first in-plane axis left-to-right; rotating shows anterior/superior up.
        plane = np.rot90(plane)
        spacing = (float(in_plane[1]), float(in_plane[0]))
        image = as_bgr(to_uint8(plane, low, high))
        scans.append(Scan(image, str(path), index, spacing, dict(meta)))
    return scans


def _nifti_voxels(volume_img, shape: tuple[int, ...], region: tuple[slice, slice, slice]) -> np.ndarray:
    """The voxels of ``region`` (first volume of a 4D file) as a 3D float32 array, read lazily."""
    dataobj = volume_img.dataobj
    if len(dataobj.shape) == 2:
        data = np.asanyarray(dataobj)[:, :, None][region]
    elif len(dataobj.shape) == 4:
        data = dataobj[(*region, 0)]
    else:
        data = dataobj[region]
    return np.asarray(data, dtype=np.float32).reshape([len(range(*r.indices(n))) for r, n in zip(region, shape)])


def _window_step(shape: tuple[int, ...]) -> int:
    """Every how many slices of the file's last axis the intensity window is sampled.

    One window per volume from evenly spaced slices (all of them up to WINDOW_SAMPLE_VOXELS), so one
    requested slice and the same slice of a whole-volume read look the same.
    """
    return max(1, math.ceil(shape[2] / max(1, WINDOW_SAMPLE_VOXELS // (shape[0] * shape[1]))))


def _window(sample: np.ndarray) -> tuple[float | None, float | None]:
    """The 0.5-99.5 percentiles of the finite values; (None, None) when there are none."""
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return None, None
    low, high = np.percentile(finite, [0.5, 99.5])
    return float(low), float(high)


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type), for one-line reports."""
    text = str(error).strip().splitlines()
    return text[0] if text else error.__class__.__name__
