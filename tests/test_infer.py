"""tools/infer.py end to end with tiny real checkpoints: every source kind, bad input, no overwrite."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
from synthetic import synthetic_scan

from mri import PROJECT_ROOT

INFER = PROJECT_ROOT / "tools" / "infer.py"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def infer(weights, *args, timeout=300):
    command = [sys.executable, str(INFER), "--det-weights", str(weights["det"]), "--cls-weights", str(weights["cls"]),
               "--conf", "0.001", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.fixture
def scans(tmp_path):
    folder = tmp_path / "scans"
    (folder / "nested").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / f"s{i}.png"), synthetic_scan(96, ((0.3, 0.3, 0.5, 0.5),), seed=i))
    cv2.imwrite(str(folder / "nested" / "s0.png"), synthetic_scan(96, (), seed=9))  # same name, another folder
    return folder


def test_folder_writes_boxed_images_and_records(tiny_weights, scans, tmp_path):
    out = tmp_path / "out"
    result = infer(tiny_weights, "--source", scans, "--out", out, "--show-rejected", "--save-crops")
    assert result.returncode == 0, result.stderr[-3000:]
    data = _results(out)
    assert data["summary"]["slices_processed"] == 4 and data["skipped"] == []
    outputs = sorted(p.name for p in (out / "images").iterdir())
    assert outputs == ["nested__s0.jpg", "s0.jpg", "s1.jpg", "s2.jpg"]
    detections = [d for image in data["images"] for d in image["detections"]]
    assert detections, "conf 0.001 should give boxes even from a tiny model"
    for det in detections:
        assert set(det) >= {"box", "type", "det_score", "tumor_prob", "type_prob", "kept"}
        assert det["type"] in ("glioma", "meningioma", "pituitary") and isinstance(det["kept"], bool)
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(detections) and {"x1", "det_score", "tumor_prob", "kept"} <= set(rows[0])
    assert len(list((out / "crops").iterdir())) == len(detections)
    import torch

    shipped = torch.load(tiny_weights["cls"], map_location="cpu", weights_only=True)["thresholds"]["default"]
    assert data["settings"]["cls_threshold"] == pytest.approx(shipped)  # the checkpoint's calibrated threshold
    assert data["settings"]["tta"] is True  # the default for PyTorch detector weights
    # as these heads were trained: detect.train standardises by default, classify.train does not
    assert data["settings"]["standardise"] == {"detector": True, "classifier": False}


def test_single_image_and_glob(tiny_weights, scans, tmp_path):
    single = infer(tiny_weights, "--source", scans / "s1.png", "--out", tmp_path / "one")
    assert single.returncode == 0 and _results(tmp_path / "one")["summary"]["slices_processed"] == 1
    pattern = infer(tiny_weights, "--source", f"{scans}/**/s0.png", "--out", tmp_path / "glob")
    assert pattern.returncode == 0 and _results(tmp_path / "glob")["summary"]["slices_processed"] == 2


def test_dicom_file_and_series_folder(tiny_weights, tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    for i in range(2):
        (series / f"IM{i:04d}").write_bytes((PYDICOM_FILES / "MR_small.dcm").read_bytes())  # no extension
    result = infer(tiny_weights, "--source", series, "--out", tmp_path / "dcm")
    assert result.returncode == 0, result.stderr[-2000:]
    assert _results(tmp_path / "dcm")["summary"]["slices_processed"] == 2


def test_nifti_volume_slices_along_the_axis(tiny_weights, tmp_path):
    volume = np.stack([synthetic_scan(64, ((0.3, 0.3, 0.5, 0.5),), seed=i)[:, :, 0] for i in range(3)], axis=2)
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), tmp_path / "vol.nii.gz")
    result = infer(tiny_weights, "--source", tmp_path / "vol.nii.gz", "--axis", "2", "--out", tmp_path / "nii")
    assert result.returncode == 0, result.stderr[-2000:]
    data = _results(tmp_path / "nii")
    assert [image["slice"] for image in data["images"]] == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "nii" / "images").iterdir()) == [f"vol_s000{i}.jpg" for i in range(3)]


def test_bad_files_are_skipped_with_a_reason_and_the_batch_goes_on(tiny_weights, scans, tmp_path):
    (scans / "notes.txt").write_text("not a scan")
    (scans / "empty.png").write_bytes(b"")
    good = (scans / "s0.png").read_bytes()
    (scans / "truncated.png").write_bytes(good[: len(good) // 3])
    (scans / "bad.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 10)
    result = infer(tiny_weights, "--source", scans, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    data = _results(tmp_path / "out")
    reasons = {Path(s["path"]).name: s["reason"] for s in data["skipped"]}
    assert set(reasons) == {"notes.txt", "empty.png", "truncated.png", "bad.dcm"}
    assert "unsupported file type" in reasons["notes.txt"] and "empty file" in reasons["empty.png"]
    assert data["summary"]["slices_processed"] == 4
    for name in reasons:
        assert f"skipped {scans / name}:" in result.stdout or any(name in line for line in result.stdout.splitlines())


def test_nothing_processable_exits_non_zero(tiny_weights, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = infer(tiny_weights, "--source", empty)
    assert result.returncode == 1 and "folder has no files" in result.stderr
    (empty / "junk.txt").write_text("x")
    result = infer(tiny_weights, "--source", empty, "--out", tmp_path / "o")
    assert result.returncode == 1 and "junk.txt" in result.stdout


def test_missing_or_invalid_weights_say_how_to_get_them(tiny_weights, scans, tmp_path):
    result = infer({**tiny_weights, "cls": tmp_path / "none.pt"}, "--source", scans)
    assert result.returncode == 2 and "classifier weights not found" in result.stderr and "weights/README.md" in result.stderr
    (tmp_path / "bad.pt").write_bytes(b"junk")
    result = infer({**tiny_weights, "det": tmp_path / "bad.pt"}, "--source", scans)
    assert result.returncode == 2 and "not a valid ultralytics detector checkpoint" in result.stderr


def test_a_second_run_never_overwrites_the_first(tiny_weights, scans, tmp_path):
    first = infer(tiny_weights, "--source", scans / "s0.png", "--out", tmp_path / "run")
    stamp = (tmp_path / "run" / "results.json").stat().st_mtime_ns
    second = infer(tiny_weights, "--source", scans / "s1.png", "--out", tmp_path / "run")
    assert first.returncode == second.returncode == 0
    assert (tmp_path / "run" / "results.json").stat().st_mtime_ns == stamp
    assert _results(tmp_path / "run-2")["images"][0]["image"].endswith("s1.png")


def test_classifier_threshold_decides_what_is_kept(tiny_weights, scans, tmp_path):
    keep_all = infer(tiny_weights, "--source", scans, "--out", tmp_path / "all", "--cls-threshold", "0")
    keep_none = infer(tiny_weights, "--source", scans, "--out", tmp_path / "none", "--cls-threshold", "1.01")
    assert keep_all.returncode == keep_none.returncode == 0
    assert _results(tmp_path / "all")["summary"]["boxes_rejected"] == 0
    assert _results(tmp_path / "none")["summary"]["boxes_kept"] == 0


def test_grad_cam_overlay(tiny_weights, scans, tmp_path):
    result = infer(tiny_weights, "--source", scans / "s0.png", "--out", tmp_path / "cam", "--cls-threshold", "0", "--cam")
    assert result.returncode == 0, result.stderr[-2000:]
    plain = infer(tiny_weights, "--source", scans / "s0.png", "--out", tmp_path / "plain", "--cls-threshold", "0")
    assert plain.returncode == 0
    with_cam = cv2.imread(str(tmp_path / "cam" / "images" / "s0.jpg"))
    without = cv2.imread(str(tmp_path / "plain" / "images" / "s0.jpg"))
    assert with_cam.shape == without.shape and not np.array_equal(with_cam, without)


def _dicom_with(tmp_path, name, **raw):
    """MR_small.dcm with header elements replaced by raw bytes, as a broken scanner writes them."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    dataset = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    for keyword, value in raw.items():
        tag = Tag(tag_for_keyword(keyword))
        value += b" " * (len(value) % 2)
        dataset._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)
    dataset.save_as(tmp_path / name)


def test_hostile_files_cost_only_themselves(tiny_weights, scans, tmp_path):
    """Broken DICOM headers, an all-NaN volume, a symlink loop and a non-UTF-8 name in one batch."""
    import os

    _dicom_with(scans, "slope.dcm", RescaleSlope=b"abc")
    _dicom_with(scans, "spacing.dcm", PixelSpacing=b"0.5")  # one value: read, spacing unknown
    nib.save(nib.Nifti1Image(np.full((8, 8, 3), np.nan, np.float32), np.eye(4)), scans / "nan.nii.gz")
    (scans / "loop.png").symlink_to("loop.png")
    odd = os.fsencode(scans) + b"/bad_\xff.png"
    with open(odd, "wb") as handle:
        handle.write((scans / "s1.png").read_bytes())
    out = tmp_path / "out"
    result = infer(tiny_weights, "--source", scans, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    data = _results(out)
    reasons = {Path(s["path"]).name: s["reason"] for s in data["skipped"]}
    assert set(reasons) == {"slope.dcm", "nan.nii.gz", "loop.png"}
    assert "RescaleSlope is not a number" in reasons["slope.dcm"]
    assert "no finite voxel values" in reasons["nan.nii.gz"] and "symbolic link loop" in reasons["loop.png"]
    images = {Path(i["image"]).name: i for i in data["images"]}
    assert "bad_\\xff.png" in images and images["spacing.dcm"]["pixel_spacing"] is None
    assert data["summary"]["slices_processed"] == 6  # four PNGs, the odd name, the DICOM without spacing
    with open(out / "results.csv", encoding="utf-8") as handle:
        assert "bad_\\xff.png" in handle.read() or not images["bad_\\xff.png"]["detections"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
    for name in reasons:
        assert any(name in line and line.startswith("skipped") for line in result.stdout.splitlines())


def test_an_empty_source_is_refused(tiny_weights, tmp_path):
    result = infer(tiny_weights, "--source", "", "--out", tmp_path / "o")
    assert result.returncode == 1 and "the source is empty" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and not (tmp_path / "o").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_that_is_not_there_is_one_line(tiny_weights, scans, tmp_path):
    result = infer(tiny_weights, "--source", scans, "--device", "0", "--out", tmp_path / "o")
    assert result.returncode == 2 and "no CUDA GPU is available" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_an_output_folder_below_a_file_is_one_line(tiny_weights, scans, tmp_path):
    (tmp_path / "report.txt").write_text("mine")
    result = infer(tiny_weights, "--source", scans, "--out", tmp_path / "report.txt" / "run")
    assert result.returncode == 1 and "report.txt is a file" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and (tmp_path / "report.txt").read_text() == "mine"


def test_crafted_detector_weights_run_nothing(tiny_weights, scans, tmp_path):
    import torch

    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"model": Payload(), "train_args": {}}, tmp_path / "crafted.pt")
    result = infer({**tiny_weights, "det": tmp_path / "crafted.pt"}, "--source", scans, "--out", tmp_path / "o")
    assert result.returncode == 2 and "invalid weights" in result.stderr and not marker.exists()
    assert result.stderr.strip().count("\n") == 0
