"""Property-based tests: random and mutated files, headers and YAML give only the project's own errors.

Whatever bytes a scan holds, ``read_scan`` returns slices or raises ``ScanReadError``; whatever a registry,
a data.yaml, a COCO json or a label file says, the registry returns records or raises ``DatasetError``.
Bounded for CI (a fixed number of derandomised examples, well under a minute in all); set
MRI_FUZZ_EXAMPLES=2000 MRI_FUZZ_RANDOM=1 for a long, randomised run.
"""

import functools
import gzip
import json
import os
import shutil
import struct
import warnings
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic import COCO_ENTRY, YOLO_ENTRY, make_coco_dataset, make_yolo_dataset, synthetic_scan, write_registry

from mri.registry import DatasetError, dataset_from_path, load_registry
from mri.scan_io import ScanReadError, read_scan

EXAMPLES = int(os.environ.get("MRI_FUZZ_EXAMPLES", "80"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("MRI_FUZZ_RANDOM"),
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
SUFFIXES = [".png", ".jpg", ".tif", ".bmp", ".dcm", ".nii", ".nii.gz", ""]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@functools.lru_cache(maxsize=1)
def _seeds() -> dict[str, bytes]:
    """One small valid file per kind the reader knows: the seeds that mutations start from."""
    image = synthetic_scan(32)
    files = {}
    for suffix in (".png", ".jpg", ".tif", ".bmp"):
        ok, encoded = cv2.imencode(suffix, image)
        files[suffix] = encoded.tobytes()
    files[".dcm"] = (PYDICOM_FILES / "MR_small.dcm").read_bytes()
    volume = nib.Nifti1Image(np.random.default_rng(0).normal(100, 20, (8, 6, 4)).astype(np.float32), np.eye(4))
    files[".nii"] = volume.to_bytes()
    files[".nii.gz"] = gzip.compress(files[".nii"])
    return files


def _read(path: Path, **kwargs):
    """read_scan, asserting the only failure is a one-line ScanReadError naming the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            scans = read_scan(path, **kwargs)
        except ScanReadError as error:
            message = str(error)
            assert message.startswith(str(path)) and "\n" not in message, message
            return None
    for scan in scans:
        assert scan.image.dtype == np.uint8 and scan.image.ndim == 3 and scan.image.shape[2] == 3
    return scans


mutation = st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite"]),
                     st.floats(0, 1), st.binary(min_size=1, max_size=16))


def _mutate(data: bytes, edits) -> bytes:
    data = bytearray(data)
    for kind, where, chunk in edits:
        at = int(where * max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[at] ^= chunk[0] or 0xFF
        elif kind == "insert":
            data[at:at] = chunk
        elif kind == "delete":
            del data[at : at + len(chunk)]
        elif kind == "truncate":
            del data[at:]
        else:
            data[at : at + len(chunk)] = chunk
    return bytes(data)


# --- scans --------------------------------------------------------------------------------------

@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_are_a_scan_or_one_line(workdir, data, suffix):
    path = workdir / f"random{suffix}"
    path.write_bytes(data)
    _read(path)


@FUZZ
@given(kind=st.sampled_from([".png", ".jpg", ".tif", ".bmp", ".dcm", ".nii", ".nii.gz"]),
       edits=st.lists(mutation, min_size=1, max_size=4), slice_index=st.sampled_from([None, 0, 3]))
def test_mutated_scans_are_a_scan_or_one_line(workdir, kind, edits, slice_index):
    path = workdir / f"mutated{kind}"
    payload = _seeds()[kind]
    if kind == ".nii.gz":  # mutate what is inside the gzip stream, or the stream itself
        payload = gzip.compress(_mutate(gzip.decompress(payload), edits)) if edits[0][0] != "overwrite" else _mutate(payload, edits)
    else:
        payload = _mutate(payload, edits)
    path.write_bytes(payload)
    _read(path, slice_index=slice_index)


DICOM_KEYWORDS = ["RescaleSlope", "RescaleIntercept", "PixelSpacing", "WindowCenter", "WindowWidth", "Rows", "Columns",
                  "NumberOfFrames", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "SamplesPerPixel",
                  "PixelRepresentation", "HighBit", "PlanarConfiguration"]


@FUZZ
@given(header=st.dictionaries(st.sampled_from(DICOM_KEYWORDS),
                              st.one_of(st.binary(max_size=12), st.sampled_from([b"abc", b"", b"1\\", b"nan", b"-1",
                                                                                 b"0", b"1e400", b"2\\3\\4", b"\x00\x01"])),
                              min_size=1, max_size=4))
def test_dicom_header_values_are_a_scan_or_one_line(workdir, header):
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
        for keyword, value in header.items():
            tag = Tag(tag_for_keyword(keyword))
            value += b" " * (len(value) % 2)
            dataset._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)
        path = workdir / "header.dcm"
        try:
            dataset.save_as(path)
        except Exception:  # pydicom refuses to write some values at all: nothing to read then
            return
    _read(path)


@FUZZ
@given(dims=st.lists(st.integers(-2, 40), min_size=8, max_size=8), datatype=st.sampled_from([2, 4, 8, 16, 64, 512, 0, 3, 99]),
       pixdim=st.lists(st.sampled_from([0.0, 1.0, -2.0, float("nan"), float("inf"), 1e30]), min_size=8, max_size=8),
       srow=st.lists(st.sampled_from([0.0, 1.0, -1.0, float("nan"), 1e-30]), min_size=12, max_size=12),
       scale=st.sampled_from([(1.0, 0.0), (float("nan"), 0.0), (0.0, float("inf")), (1e38, 1e38)]),
       axis=st.sampled_from([0, 1, 2]), slice_index=st.sampled_from([None, 0, 2]))
def test_nifti_header_values_are_a_scan_or_one_line(workdir, dims, datatype, pixdim, srow, scale, axis, slice_index):
    header = bytearray(nib.Nifti1Header().binaryblock)
    struct.pack_into("<8h", header, 40, *dims)
    struct.pack_into("<h", header, 70, datatype)
    struct.pack_into("<8f", header, 76, *pixdim)
    struct.pack_into("<f", header, 108, 352.0)  # vox_offset
    struct.pack_into("<2f", header, 112, *scale)  # scl_slope, scl_inter
    struct.pack_into("<h", header, 254, 1)  # sform_code
    struct.pack_into("<12f", header, 280, *srow)
    path = workdir / "header.nii"
    path.write_bytes(bytes(header) + b"\0" * 4 + np.random.default_rng(0).bytes(4000))
    _read(path, axis=axis, slice_index=slice_index)


# --- registry, data.yaml, COCO json and label files ----------------------------------------------

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 50), st.floats(allow_nan=True),
                         st.text(max_size=12), st.sampled_from(["yolo", "coco", "tiny_yolo", "train", "glioma", "(", "{split}"]))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                  st.dictionaries(st.text(max_size=8) | st.integers(0, 3), inner, max_size=4)),
                           max_leaves=12)
ENTRY_KEYS = ["format", "root", "splits", "class_map", "ignore_classes", "data_yaml", "annotations", "patient_id"]
TOP_KEYS = ["classes", "untyped", "data_dir", "datasets", "split_rules"]


def _load_and_read(path: Path, names=None):
    """load_registry and images(), asserting the only failure is DatasetError with one line per problem."""
    try:
        registry = load_registry(path)
        registry.images(names)
    except DatasetError as error:
        assert error.problems and all(isinstance(p, str) and p and "\n" not in p for p in error.problems), error.problems


@pytest.fixture(scope="module")
def datasets(workdir):
    root = workdir / "data"
    make_yolo_dataset(root / "yolo_set", per_split={"train": 2, "val": 1, "test": 1}, size=32)
    make_coco_dataset(root / "coco_set", per_split=2, size=32)
    return root


@FUZZ
@given(document=st.one_of(yaml_values, st.dictionaries(st.sampled_from(TOP_KEYS), yaml_values, max_size=5)))
def test_any_registry_document_is_records_or_one_line_problems(datasets, document):
    path = datasets / "fuzz_registry.yaml"
    path.write_text(yaml.safe_dump(document))
    _load_and_read(path)


@FUZZ
@given(entry=st.fixed_dictionaries({}, optional={key: yaml_values for key in ENTRY_KEYS}),
       base=st.sampled_from([YOLO_ENTRY, COCO_ENTRY]), mix=st.booleans())
def test_any_dataset_entry_is_records_or_one_line_problems(datasets, entry, base, mix):
    path = write_registry(datasets / "fuzz_registry.yaml", {"fuzzed": {**base, **entry} if mix else entry,
                                                           "tiny_yolo": YOLO_ENTRY})
    _load_and_read(path)


@FUZZ
@given(edits=st.lists(mutation, min_size=1, max_size=5))
def test_mutated_registry_text_is_records_or_one_line_problems(datasets, edits):
    valid = yaml.safe_dump({"classes": ["glioma", "meningioma", "pituitary"], "untyped": "tumor", "data_dir": str(datasets),
                            "datasets": {"tiny_yolo": YOLO_ENTRY, "tiny_coco": COCO_ENTRY}}, sort_keys=False).encode()
    path = datasets / "fuzz_registry.yaml"
    path.write_bytes(_mutate(valid, edits))
    _load_and_read(path)


@pytest.fixture(scope="module")
def yolo_copy(datasets, workdir):
    """A private copy of the YOLO dataset whose data.yaml and first label the next tests overwrite."""
    root = workdir / "yolo_fuzz"
    shutil.copytree(datasets / "yolo_set", root)
    registry = write_registry(workdir / "yolo_fuzz.yaml", {"tiny": {**YOLO_ENTRY, "root": str(root)}})
    return root, registry, (root / "data.yaml").read_bytes(), sorted((root / "labels" / "train").glob("*.txt"))[0]


label_lines = st.lists(st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(st.integers(-3, 5).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                       st.sampled_from(["nan", "inf", "-0", "1e999", "0x1", "1_0", "", "é"])), max_size=9).map(" ".join),
), max_size=6)


@FUZZ
@given(lines=label_lines, raw=st.one_of(st.none(), st.binary(max_size=64)))
def test_any_label_file_is_records_or_one_line_problems(yolo_copy, lines, raw):
    root, registry, _, label = yolo_copy
    label.write_bytes(raw if raw is not None else "\n".join(lines).encode("utf-8", "surrogatepass"))
    _load_and_read(registry, ["tiny"])


@FUZZ
@given(document=st.one_of(yaml_values, st.fixed_dictionaries({"names": yaml_values}, optional={"train": yaml_values, "path": yaml_values})),
       edits=st.one_of(st.none(), st.lists(mutation, min_size=1, max_size=3)))
def test_any_data_yaml_is_records_or_one_line_problems(yolo_copy, document, edits):
    root, registry, valid, _ = yolo_copy
    text = yaml.safe_dump(document).encode() if edits is None else _mutate(valid, edits)
    (root / "data.yaml").write_bytes(text)
    _load_and_read(registry, ["tiny"])
    try:
        dataset_from_path(root / "data.yaml", load_registry(registry), "train", report=lambda line: None)
    except DatasetError as error:
        assert all("\n" not in p for p in error.problems)


@pytest.fixture(scope="module")
def coco_copy(datasets, workdir):
    root = workdir / "coco_fuzz"
    shutil.copytree(datasets / "coco_set", root)
    registry = write_registry(workdir / "coco_fuzz.yaml", {"tiny": {**COCO_ENTRY, "root": str(root)}})
    annotations = root / "train" / "_annotations.coco.json"
    return registry, annotations, json.loads(annotations.read_text())


@FUZZ
@given(path=st.lists(st.sampled_from(["images", "annotations", "categories", 0, 1, "bbox", "id", "image_id",
                                      "category_id", "width", "height", "file_name", "name"]), min_size=1, max_size=4),
       value=yaml_values, edits=st.one_of(st.none(), st.lists(mutation, min_size=1, max_size=3)))
def test_any_coco_file_is_records_or_one_line_problems(coco_copy, path, value, edits):
    registry, annotations, valid = coco_copy
    document = json.loads(json.dumps(valid))
    node = document
    for key in path[:-1]:  # walk as far as the document goes, then replace what is there
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    try:
        node[path[-1]] = value
    except (IndexError, TypeError):
        pass
    text = json.dumps(document, allow_nan=True).encode()
    annotations.write_bytes(text if edits is None else _mutate(text, edits))
    _load_and_read(registry, ["tiny"])
    try:
        dataset_from_path(annotations, load_registry(registry), "test", report=lambda line: None)
    except DatasetError as error:
        assert all("\n" not in p for p in error.problems)
