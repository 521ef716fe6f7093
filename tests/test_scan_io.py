from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import SHARED_DATA, needs_shared_data
from PIL import Image
from ultralytics.utils import patches  # noqa: F401  (scans are read with ultralytics' PIL patch in place, as in infer)

from mri.scan_io import ScanReadError, read_scan

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
NIBABEL_FILES = Path(nib.__file__).parent / "tests" / "data"


def _check(scan):
    assert scan.image.dtype == np.uint8 and scan.image.ndim == 3 and scan.image.shape[2] == 3


def test_gray_png(tmp_path):
    path = tmp_path / "gray.png"
    gray = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))
    cv2.imwrite(str(path), gray)
    (scan,) = read_scan(path)
    _check(scan)
    assert scan.image.shape == (32, 64, 3) and np.array_equal(scan.image[:, :, 0], gray)
    assert scan.slice_index is None and scan.path == str(path)


def test_16bit_png_is_windowed_to_full_range(tmp_path):
    path = tmp_path / "deep.png"
    values = np.linspace(1000, 3000, 40 * 40).reshape(40, 40).astype(np.uint16)
    Image.fromarray(values).save(path)
    (scan,) = read_scan(path)
    _check(scan)
    assert scan.image.min() == 0 and scan.image.max() == 255


def test_rgb_jpeg_keeps_colour_as_bgr(tmp_path):
    path = tmp_path / "rgb.png"
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 200  # red
    Image.fromarray(rgb).save(path)
    (scan,) = read_scan(path)
    assert scan.image[0, 0].tolist() == [0, 0, 200]


def test_rgba_png(tmp_path):
    path = tmp_path / "rgba.png"
    Image.fromarray(np.full((10, 12, 4), 128, np.uint8)).save(path)
    (scan,) = read_scan(path)
    _check(scan)
    assert scan.image.shape == (10, 12, 3)


def test_dicom_applies_rescale_and_reports_spacing():
    (scan,) = read_scan(PYDICOM_FILES / "CT_small.dcm")
    _check(scan)
    dataset = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    assert scan.pixel_spacing == pytest.approx(tuple(float(v) for v in dataset.PixelSpacing))
    assert scan.image.shape[:2] == dataset.pixel_array.shape


def test_dicom_monochrome1_is_inverted(tmp_path):
    source = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    (normal,) = read_scan(PYDICOM_FILES / "MR_small.dcm")
    source.PhotometricInterpretation = "MONOCHROME1"
    inverted_path = tmp_path / "mono1.dcm"
    source.save_as(inverted_path)
    (inverted,) = read_scan(inverted_path)
    assert np.array_equal(inverted.image, 255 - normal.image)


def test_dicom_without_suffix_is_recognised(tmp_path):
    target = tmp_path / "IM0001"
    target.write_bytes((PYDICOM_FILES / "MR_small.dcm").read_bytes())
    (scan,) = read_scan(target)
    _check(scan)


def test_nifti_all_slices_along_chosen_axis():
    path = NIBABEL_FILES / "anatomical.nii"
    shape = nib.as_closest_canonical(nib.load(str(path))).shape
    axial = read_scan(path, axis=2)
    assert len(axial) == shape[2] and [s.slice_index for s in axial[:3]] == [0, 1, 2]
    sagittal = read_scan(path, axis=0, slice_index=shape[0] // 2)
    assert len(sagittal) == 1 and sagittal[0].slice_index == shape[0] // 2
    _check(sagittal[0])
    assert sagittal[0].pixel_spacing is not None


def test_nifti_gz_and_4d():
    scans = read_scan(NIBABEL_FILES / "example4d.nii.gz", slice_index=0)
    assert len(scans) == 1
    _check(scans[0])


def test_synthetic_nifti_slice_content(tmp_path):
    volume = np.zeros((16, 12, 5), np.float32)
    volume[4:8, 2:5, 3] = 100.0
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    (scan,) = read_scan(path, axis=2, slice_index=3)
    assert scan.image.max() == 255 and scan.image.shape[:2] == (12, 16)  # rotated: rows are the y axis


@pytest.mark.parametrize("name, content, reason", [
    ("empty.jpg", b"", "empty file"),
    ("notes.txt", b"hello", "unsupported file type"),
    ("fake.png", b"\x89PNG\r\n\x1a\n not really", "not a readable image"),
    ("broken.dcm", b"\x00" * 128 + b"DICM" + b"\x01\x02", "DICOM"),
    ("broken.nii", b"\x00" * 400, "not a readable NIfTI"),
])
def test_bad_files_raise_one_line_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ScanReadError) as caught:
        read_scan(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and reason in message and "\n" not in message


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ScanReadError, match="truncated"):
        read_scan(path)


def test_missing_file(tmp_path):
    with pytest.raises(ScanReadError, match="no such file"):
        read_scan(tmp_path / "absent.png")


def test_slice_out_of_range():
    with pytest.raises(ScanReadError, match="out of range"):
        read_scan(NIBABEL_FILES / "anatomical.nii", axis=2, slice_index=10_000)


@needs_shared_data
def test_real_demo_scans_read():
    for path in sorted((SHARED_DATA / "samples").glob("*.jpg")):
        (scan,) = read_scan(path)
        _check(scan)
        assert min(scan.image.shape[:2]) >= 200


def _dicom_with_raw_header(tmp_path, name: str, **raw: bytes) -> Path:
    """MR_small.dcm with header elements replaced by raw bytes, as a broken scanner would write them."""
    from pydicom.dataelem import RawDataElement
    from pydicom.datadict import tag_for_keyword, dictionary_VR
    from pydicom.tag import Tag

    dataset = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    for keyword, value in raw.items():
        tag = Tag(tag_for_keyword(keyword))
        value += b" " * (len(value) % 2)
        dataset._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)
    path = tmp_path / name
    dataset.save_as(path)
    return path


@pytest.mark.parametrize("keyword, value", [("RescaleSlope", b"abc"), ("RescaleIntercept", b"n/a"),
                                            ("NumberOfFrames", b"two")])
def test_dicom_non_numeric_header_is_one_line(tmp_path, keyword, value):
    path = _dicom_with_raw_header(tmp_path, "bad.dcm", **{keyword: value})
    with pytest.raises(ScanReadError) as caught:
        read_scan(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and keyword in message and "\n" not in message


@pytest.mark.parametrize("spacing", [b"abc\\x", b"0.5", b"", b"nan\\1"])
def test_dicom_malformed_pixel_spacing_keeps_the_image(tmp_path, spacing):
    path = _dicom_with_raw_header(tmp_path, "spacing.dcm", PixelSpacing=spacing)
    (scan,) = read_scan(path)
    (reference,) = read_scan(PYDICOM_FILES / "MR_small.dcm")
    assert scan.pixel_spacing is None and np.array_equal(scan.image, reference.image)


def test_all_nan_nifti_is_one_line(tmp_path):
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 8, 4), np.nan, np.float32), np.eye(4)), path)
    for slice_index in (None, 1):
        with pytest.raises(ScanReadError, match="no finite voxel values"):
            read_scan(path, slice_index=slice_index)


def test_nifti_2d_file_reads(tmp_path):
    path = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.arange(12 * 10, dtype=np.float32).reshape(12, 10), np.diag([2, 3, 1, 1])), path)
    (scan,) = read_scan(path, axis=2)
    assert scan.image.shape == (10, 12, 3) and scan.pixel_spacing == (3.0, 2.0)


def test_nifti_one_slice_matches_the_whole_volume_read(tmp_path):
    """Reading one slice reads only it, yet gives the same pixels as that slice of a whole-volume read."""
    volume = np.random.default_rng(0).normal(100, 30, (13, 17, 11)).astype(np.float32)
    affine = np.array([[0, 0, -2, 10], [1.5, 0, 0, 0], [0, -3, 0, 5], [0, 0, 0, 1]], float)  # permuted, flipped
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), path)
    canonical = nib.as_closest_canonical(nib.load(str(path)))
    for axis in range(3):
        whole = read_scan(path, axis=axis)
        assert len(whole) == canonical.shape[axis]
        for index in (0, len(whole) // 2, len(whole) - 1):
            (one,) = read_scan(path, axis=axis, slice_index=index)
            assert np.array_equal(one.image, whole[index].image) and one.pixel_spacing == whole[index].pixel_spacing
        expected = np.rot90(np.take(canonical.get_fdata(), 4, axis=axis))
        assert np.corrcoef(whole[4].image[:, :, 0].ravel(), expected.ravel())[0, 1] > 0.99


def _zero_volume_gz(path: Path, shape) -> Path:
    """A tiny .nii.gz of a huge, mostly empty uint8 volume, written plane by plane (no big array in memory)."""
    import gzip

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header.set_sform(np.eye(4), 1)
    header["vox_offset"] = 352
    plane = np.zeros(shape[:2], np.uint8)
    plane[100:200, 100:200] = 50
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(header.binaryblock + b"\0" * 4)
        for _ in range(shape[2]):
            handle.write(plane.tobytes(order="F"))
    return path


@pytest.mark.slow
def test_huge_nifti_reads_one_slice_in_little_memory_and_refuses_the_whole(tmp_path):
    import tracemalloc

    from mri.scan_io import MAX_VOLUME_VOXELS

    path = _zero_volume_gz(tmp_path / "huge.nii.gz", (1024, 1024, 256))  # about 1.3 MB on disk, 1 GB as float32
    assert path.stat().st_size < 3_000_000
    tracemalloc.start()
    try:
        (scan,) = read_scan(path, slice_index=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scan.image.shape == (1024, 1024, 3) and scan.image.max() == 255
    assert peak < 400e6, f"one slice took {peak / 1e6:.0f} MB"
    with pytest.raises(ScanReadError) as caught:
        read_scan(path)
    assert f"limit {MAX_VOLUME_VOXELS:,}" in str(caught.value) and "--slice" in str(caught.value)


def test_nifti_header_with_absurd_size_is_refused_before_reading(tmp_path):
    path = tmp_path / "absurd.nii"
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = 352
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 1000)
    for slice_index in (None, 0):
        with pytest.raises(ScanReadError, match="too large"):
            read_scan(path, slice_index=slice_index)


def test_unreadable_file_says_so(tmp_path):
    import os

    path = tmp_path / "locked.png"
    cv2.imwrite(str(path), np.zeros((8, 8), np.uint8))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who can read any file")
        with pytest.raises(ScanReadError, match="cannot read the file"):
            read_scan(path)
    finally:
        path.chmod(0o644)
