"""Export both heads for ONNX Runtime or OpenVINO: the cascade then runs without PyTorch models.

    python tools/export.py --format onnx --out runs/export/onnx          # shipped weights in weights/
    python tools/export.py --format openvino --out runs/export/openvino
    python tools/export.py --format onnx --det-weights runs/detect/yolov5n-320/weights/best.pt \\
        --cls-weights runs/classify/lite0-96/best.pt --out runs/export/mine

Writes, to DIR (a sibling DIR-2... if DIR already holds files): for onnx, detector.onnx (ultralytics' own
export, dynamic batch and size, simplified) and classifier.onnx (torch.onnx.export, dynamic batch, softmax
included); for openvino, detector_openvino_model/ and classifier_openvino_model/ (the same graphs read by
OpenVINO and saved as IR, fp32). The classifier carries its checkpoint's contract (classes, input size,
mean/std, crop rule, thresholds and every other non-weight key) as JSON in its metadata. Use them with
--det-weights/--cls-weights of tools/infer.py, tools/evaluate.py and tools/bench_cascade.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import mri.offline  # noqa: F401  (offline environment before any heavy import)
from mri import PROJECT_ROOT

FORMATS = ("onnx", "openvino")
OPSET = 17  # classifier graph; supported by onnxruntime >= 1.13 and OpenVINO 2024+


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--det-weights", default=str(PROJECT_ROOT / "weights" / "detector.pt"))
    parser.add_argument("--cls-weights", default=str(PROJECT_ROOT / "weights" / "classifier.pt"))
    parser.add_argument("--imgsz", type=int, default=None, help="detector input size (default: its training size)")
    parser.add_argument("--out", required=True, help="output folder (a new sibling is made if it holds files)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (saved with the arguments)")
    return parser


def export_detector(weights: str | Path, out: Path, fmt: str = "onnx", imgsz: int | None = None) -> Path:
    """``out/detector.onnx`` (or ``out/detector_openvino_model/``) from an ultralytics ``.pt`` detector."""
    from cascade.backends import weights_format
    from detect.model import load_detector, trained_image_size

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


def _load_onnx(path: Path):
    import onnx

    return onnx.load(str(path))


def _move(source: Path, target: Path) -> Path:
    """Rename into place (same filesystem): a reader never sees a half-written model."""
    source.replace(target)
    return target


def main(args) -> int:
    from cascade.backends import ExportedWeightsError
    from classify.checkpoint import CheckpointError
    from mri.cli import resolve_path, seed_everything
    from mri.files import output_dir, write_yaml

    seed_everything(args.seed)

    out = output_dir(resolve_path(args.out))
    try:
        detector = export_detector(args.det_weights, out, args.format, args.imgsz)
        classifier = export_classifier(args.cls_weights, out, args.format)
    except (FileNotFoundError, ValueError, CheckpointError, ExportedWeightsError) as error:
        if not any(out.iterdir()):
            out.rmdir()  # nothing was exported: leave no empty folder behind
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_yaml(out / "args.yaml", vars(args))
    for path in (detector, classifier):
        size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
        print(f"{path}: {size / 1e6:.1f} MB")
    print(f"use them with: python tools/infer.py --source demo/scans --det-weights {detector} --cls-weights {classifier}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
