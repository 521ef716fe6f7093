"""Exporting both heads for ONNX Runtime or OpenVINO (``tools/export.py`` is the command).

The detector goes through ultralytics' own ONNX export, plus ``mri_input`` in its metadata when it was
trained on standardised slices (``cascade.backends.load_detector`` reads it back); the classifier through
``torch.onnx.export`` with the softmax included, checked against PyTorch before it is kept, and carrying its
checkpoint's contract as JSON in its metadata (``cascade.backends.CONTRACT_KEY``). OpenVINO models are the
same graphs read by OpenVINO and saved as IR (fp32). Every file is moved into place whole.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

FORMATS = ("onnx", "openvino")
OPSET = 17  # classifier graph; supported by onnxruntime >= 1.13 and OpenVINO 2024+


def export_detector(weights: str | Path, out: Path, fmt: str = "onnx", imgsz: int | None = None) -> Path:
    """``out/detector.onnx`` (or ``out/detector_openvino_model/``) from an ultralytics ``.pt`` detector."""
    from cascade.backends import weights_format
    from detect.model import INPUT_KEY, STANDARDISED, load_detector, trained_image_size, trained_standardised

    if weights_format(weights) != "pytorch":
        raise ValueError(f"{weights}: export starts from a PyTorch detector (.pt), not an exported one")
    model = load_detector(weights)  # one-line error for a missing or foreign file
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as work:
        # ultralytics writes the export beside the .pt it reads, so it reads a copy inside our scratch folder
        copy = Path(work) / "detector.pt"
        shutil.copyfile(model.ckpt_path, copy)
        from ultralytics import YOLO
        from ultralytics.utils import LOGGER

        size = imgsz or trained_image_size(model)
        level = LOGGER.level
        LOGGER.setLevel("WARNING")  # its closing hints name our scratch folder, which is gone by then
        try:
            onnx_file = Path(YOLO(str(copy), task="detect").export(format="onnx", dynamic=True, simplify=True, imgsz=size,
                                                                   device="cpu"))
        finally:
            LOGGER.setLevel(level)
        if trained_standardised(model):  # cascade.backends.load_detector reads it back
            _add_metadata(onnx_file, {INPUT_KEY: STANDARDISED})
        if fmt == "onnx":
            return _move(onnx_file, out / "detector.onnx")
        folder = Path(work) / "detector_openvino_model"
        _onnx_to_openvino(onnx_file, folder / "detector.xml")
        metadata = {p.key: p.value for p in _load_onnx(onnx_file).metadata_props}
        import yaml

        (folder / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
        return _move(folder, out / folder.name)


def export_classifier(weights: str | Path, out: Path, fmt: str = "onnx") -> Path:
    """``out/classifier.onnx`` (or ``out/classifier_openvino_model/``) from a classifier checkpoint."""
    import onnx
    import torch

    from cascade.backends import CONTRACT_KEY, classifier_contract
    from classify.checkpoint import load_checkpoint, model_from_checkpoint

    checkpoint = load_checkpoint(weights)
    network = torch.nn.Sequential(model_from_checkpoint(checkpoint, "cpu"), torch.nn.Softmax(dim=1)).eval()
    size = int(checkpoint["input_size"])
    example = torch.zeros((2, 3, size, size))
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as work:
        onnx_file = Path(work) / "classifier.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice; it needs no onnxscript
            torch.onnx.export(network, (example,), str(onnx_file), input_names=["images"], output_names=["probabilities"],
                              dynamic_axes={"images": {0: "batch"}, "probabilities": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
        graph = _load_onnx(onnx_file)
        contract = json.dumps(classifier_contract(checkpoint))
        onnx.helper.set_model_props(graph, {CONTRACT_KEY: contract})
        graph.doc_string = f"MRI tumor classifier ({checkpoint['arch']}): input RGB crops normalised by the contract's mean/std"
        onnx.save(graph, str(onnx_file))
        check_classifier_export(network, onnx_file, size)
        if fmt == "onnx":
            return _move(onnx_file, out / "classifier.onnx")
        folder = Path(work) / "classifier_openvino_model"
        _onnx_to_openvino(onnx_file, folder / "classifier.xml", {CONTRACT_KEY: contract})
        return _move(folder, out / folder.name)


def check_classifier_export(network, onnx_file: Path, size: int, tolerance: float = 1e-4) -> float:
    """Largest probability difference between PyTorch and ONNX Runtime on a random batch; raises above ``tolerance``."""
    import numpy as np
    import onnxruntime
    import torch

    batch = torch.randn((3, 3, size, size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = network(batch).numpy()
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": batch.numpy()})[0]
    difference = float(np.abs(got - expected).max())
    if difference > tolerance:
        raise RuntimeError(f"{onnx_file}: ONNX Runtime differs from PyTorch by {difference:.2e} (a bug in the export)")
    return difference


def _onnx_to_openvino(onnx_file: Path, xml: Path, rt_info: dict | None = None) -> Path:
    # Core.read_model, not openvino.convert_model: the latter starts OpenVINO's usage telemetry.
    import openvino

    model = openvino.Core().read_model(str(onnx_file))
    for key, value in (rt_info or {}).items():
        model.set_rt_info(value, [key])
    xml.parent.mkdir(parents=True, exist_ok=True)
    openvino.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def _add_metadata(onnx_file: Path, entries: dict[str, str]) -> None:
    """Append keys to an ONNX model's metadata_props, keeping ultralytics' own (imgsz, names, stride, ...)."""
    import onnx

    graph = _load_onnx(onnx_file)
    for key, value in entries.items():
        prop = graph.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(graph, str(onnx_file))


def _load_onnx(path: Path):
    import onnx

    return onnx.load(str(path))


def _move(source: Path, target: Path) -> Path:
    """Rename into place (same filesystem): a reader never sees a half-written model."""
    source.replace(target)
    return target
