"""Exported heads (ONNX, OpenVINO) and shipped fp16 weights give the cascade's results; unusable ones fail in one line."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import cascade_scans

from conftest import plain_detector_copy, run_tool

from cascade.backends import CONTRACT_KEY, load_classifier
from cascade.export import export_classifier, export_detector
from cascade.pipeline import Cascade, WeightsError
from mri import PROJECT_ROOT

SHIPPED = {"det": PROJECT_ROOT / "weights" / "detector.pt", "cls": PROJECT_ROOT / "weights" / "classifier.pt"}
DEMO_SCANS = sorted((PROJECT_ROOT / "demo" / "scans").glob("*.jpg"))


def _assert_same_results(reference, other, corner_px=2.0, prob=0.01):
    for expected, got in zip(reference, other, strict=True):
        expected_kept = [d for d in expected if d.kept]
        got_kept = [d for d in got if d.kept]
        assert len(expected_kept) == len(got_kept)
        for a, b in zip(expected_kept, got_kept):
            assert np.abs(np.array(a.box) - np.array(b.box)).max() <= corner_px
            assert abs(a.tumor_prob - b.tumor_prob) <= prob and a.type == b.type


@pytest.fixture(scope="module")
def exported(tiny_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    onnx = out / "onnx"
    onnx.mkdir()
    return {"onnx": {"det": export_detector(tiny_weights["det"], onnx),
                     "cls": export_classifier(tiny_weights["cls"], onnx)}, "root": out}


@pytest.mark.slow
def test_onnx_export_carries_the_contract_and_gives_the_same_results(tiny_weights, exported):
    import onnx

    files = exported["onnx"]
    assert files["det"].name == "detector.onnx" and files["cls"].name == "classifier.onnx"
    props = {p.key: p.value for p in onnx.load(str(files["cls"])).metadata_props}
    contract = json.loads(props[CONTRACT_KEY])
    checkpoint = torch.load(tiny_weights["cls"], map_location="cpu", weights_only=True)
    for key in ("classes", "input_size", "mean", "std", "crop_rule", "thresholds", "arch"):
        assert contract[key] == json.loads(json.dumps(checkpoint[key]))
    head = load_classifier(files["cls"], torch.device("cpu"))
    batch = torch.randn(5, 3, contract["input_size"], contract["input_size"])  # dynamic batch
    assert head(batch).shape == (5, len(contract["classes"]))

    images = cascade_scans()
    # exported detectors run single-scale, so the PyTorch reference does too (its default is test-time augmentation)
    reference = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001, tta=False).run(images)
    onnx_cascade = Cascade.load(files["det"], files["cls"], conf=0.001)
    assert onnx_cascade.tta is False and Cascade.load(tiny_weights["det"], files["cls"]).tta is True
    onnx_run = onnx_cascade.run(images)
    assert sum(len(d) for d in reference) > 0
    _assert_same_results(reference, onnx_run)
    mixed = Cascade.load(tiny_weights["det"], files["cls"], conf=0.001, tta=False).run(images)  # one head of each kind
    _assert_same_results(reference, mixed)


@pytest.mark.slow
def test_openvino_export_gives_the_same_results(tiny_weights, exported):
    folder = exported["root"] / "openvino"
    folder.mkdir()
    det = export_detector(tiny_weights["det"], folder, "openvino")
    cls = export_classifier(tiny_weights["cls"], folder, "openvino")
    assert det.name == "detector_openvino_model" and (det / "detector.xml").is_file() and (det / "metadata.yaml").is_file()
    assert (cls / "classifier.xml").is_file()
    images = cascade_scans()
    reference = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001, tta=False).run(images)
    _assert_same_results(reference, Cascade.load(det, cls, conf=0.001).run(images))
    assert "openvino_telemetry" in sys.modules and sys.modules["openvino_telemetry"] is None  # its usage events stay off


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED["det"].is_file() or not DEMO_SCANS, reason="shipped weights or demo scans absent")
def test_shipped_weights_exported_to_onnx_keep_the_demo_results(tmp_path):
    from mri.scan_io import read_scan

    det, cls = export_detector(SHIPPED["det"], tmp_path), export_classifier(SHIPPED["cls"], tmp_path)
    images = [read_scan(path)[0].image for path in DEMO_SCANS]
    reference = Cascade.load(SHIPPED["det"], SHIPPED["cls"], tta=False).run(images)
    assert any(d.kept for image in reference for d in image)
    _assert_same_results(reference, Cascade.load(det, cls).run(images))


def test_unusable_exported_weights_fail_in_one_line(tiny_weights, tmp_path):
    import onnx

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="junk.onnx: not a readable ONNX model"):
        Cascade.load(tiny_weights["det"], junk)
    with pytest.raises(WeightsError, match="junk.onnx: not a readable ONNX model"):
        Cascade.load(junk, tiny_weights["cls"])
    bare = tmp_path / "bare.onnx"  # a real ONNX model without our contract
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(bare))
    with pytest.raises(WeightsError, match=f"no {CONTRACT_KEY} in its metadata"):
        Cascade.load(tiny_weights["det"], bare)
    with pytest.raises(WeightsError, match="not a detector exported by ultralytics"):
        Cascade.load(bare, tiny_weights["cls"])
    with pytest.raises(WeightsError, match="weights not found"):
        Cascade.load(tmp_path / "none.onnx", tiny_weights["cls"])


def test_export_cli_refuses_missing_weights_in_one_line(tmp_path):
    import subprocess

    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "tools" / "export.py"), "--det-weights", str(tmp_path / "none.pt"),
                             "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'none.pt'}: detector weights not found "
                                                  "(train one with `python -m detect.train`)"]
    assert not out.exists()


def test_export_weights_ships_an_fp16_classifier_that_gives_the_same_results(tiny_weights, tmp_path):
    out = tmp_path / "weights"
    assert run_tool("export_weights", "--detector", tiny_weights["det"], "--classifier", tiny_weights["cls"], "--out", out) == 0
    shipped = torch.load(out / "classifier.pt", map_location="cpu", weights_only=True)
    assert not {"optimizer", "scheduler"} & set(shipped)
    assert {v.dtype for v in shipped["model"].values() if v.is_floating_point()} == {torch.float16}
    assert (out / "detector.pt").read_bytes() == Path(tiny_weights["det"]).read_bytes()
    images = cascade_scans()
    full = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001).run(images)
    half = Cascade.load(out / "detector.pt", out / "classifier.pt", conf=0.001).run(images)
    assert [len(d) for d in full] == [len(d) for d in half]
    for a, b in zip(full, half):
        assert [d.tumor_prob for d in b] == pytest.approx([d.tumor_prob for d in a], abs=0.02)


@pytest.mark.slow
def test_exported_standardised_detector_standardises_its_input_too(tiny_weights, tmp_path, monkeypatch):
    """The export metadata carries the standardisation, so ONNX and OpenVINO copies are fed what the .pt is fed.
    (The tiny detector's outputs barely depend on its input, so this checks the input it is given.)"""
    import shutil

    from cascade.backends import load_detector
    from detect.model import predict_boxes, trained_standardised
    from mri.intensity import standardise

    weights = tmp_path / "standardised.pt"
    shutil.copyfile(tiny_weights["det"], weights)
    assert trained_standardised(load_detector(weights))  # the fixture trains with --hyp standardised
    dim = (cascade_scans()[0] * 0.35).astype(np.uint8)
    for fmt in ("onnx", "openvino"):
        exported = load_detector(export_detector(weights, tmp_path, fmt))
        assert trained_standardised(exported)
        fed = []
        monkeypatch.setattr(exported, "predict", lambda images, **kwargs: fed.extend(images) or [])
        predict_boxes(exported, [dim], 96, 0.25, "cpu")
        assert np.array_equal(fed[0], standardise(dim)) and not np.array_equal(fed[0], dim)
    plain = tmp_path / "plain"
    plain.mkdir()
    plain_weights = plain_detector_copy(weights, plain / "plain.pt")
    assert not trained_standardised(load_detector(export_detector(plain_weights, plain)))

