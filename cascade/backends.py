"""Either head from PyTorch, ONNX or OpenVINO weights, told apart by the path the user gives.

* detector: ``.pt`` (ultralytics checkpoint), ``.onnx`` or an ``*_openvino_model/`` folder, the last two as
  ``tools/export.py`` writes them (ultralytics' own export); ultralytics runs all three. An exported detector
  trained on standardised slices says so in its metadata (``detect.model.INPUT_KEY``), as its checkpoint did.
* classifier: ``.pt`` (our checkpoint, ``classify.checkpoint``), ``.onnx`` or an ``*_openvino_model/`` folder.
  An exported classifier carries the checkpoint's contract (every key except the weights and training state:
  classes, input size, mean/std, crop rule, thresholds, ...) as JSON under ``CONTRACT_KEY`` in its metadata,
  so inference reads the same values from any format.

``load_classifier`` returns a head whose ``contract`` is that dict and whose call maps a normalised batch
(N, 3, size, size) to class probabilities (N, classes) as a numpy array.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

CONTRACT_KEY = "classifier_contract"  # ONNX metadata_props key / OpenVINO rt_info key of the contract JSON
TRAINING_STATE = ("model", "optimizer", "scheduler")  # checkpoint keys that are weights or optimiser state
OPENVINO_SUFFIX = "_openvino_model"


class ExportedWeightsError(ValueError):
    """Exported weights that are missing, unreadable or lack what inference needs (one line, naming the file)."""


def weights_format(path: str | Path) -> str:
    """``"pytorch"``, ``"onnx"`` or ``"openvino"``, from the file name alone."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if path.suffix.lower() == ".xml" or path.name.endswith(OPENVINO_SUFFIX) or path.is_dir():
        return "openvino"
    return "pytorch"


def classifier_contract(checkpoint: dict) -> dict:
    """Every key of a checkpoint that inference or a reader may need, as plain JSON values (weights left out)."""
    contract = {}
    for key, value in checkpoint.items():
        if key in TRAINING_STATE:
            continue
        try:
            contract[key] = json.loads(json.dumps(value, default=_plain))
        except (TypeError, ValueError):  # a value JSON cannot hold (e.g. a tensor): not part of the contract
            continue
    return contract


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy values and arrays, small tensors (e.g. fitted coefficients)
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(type(value).__name__)


def openvino_xml(path: str | Path) -> Path:
    """The ``.xml`` of an OpenVINO model given as the file or its folder."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.xml"))
        if not found:
            raise ExportedWeightsError(f"{path}: no OpenVINO .xml model in this folder (make one with tools/export.py)")
        return found[0]
    return path


# ----------------------------------------------------------------------------------------------- detector

def load_detector(weights: str | Path):
    """An ultralytics detector from ``.pt``, ``.onnx`` or an OpenVINO folder; a clear one-line error otherwise."""
    from detect.model import load_detector as load_pytorch_detector
    from mri.cli import resolve_path

    kind = weights_format(weights)
    if kind == "pytorch":
        return load_pytorch_detector(weights)
    from ultralytics import YOLO

    path = resolve_path(weights)
    if kind == "openvino":
        path = openvino_xml(path).parent if path.exists() else path
        if not path.name.endswith(OPENVINO_SUFFIX):
            raise ExportedWeightsError(f"{weights}: an OpenVINO detector is a folder named *{OPENVINO_SUFFIX} "
                                       "(as tools/export.py writes it)")
    from detect.model import INPUT_KEY, record_input

    metadata = detector_metadata(path)  # checks the file now: ultralytics would only fail at the first predict
    model = YOLO(str(path), task="detect")
    record_input(model, metadata.get(INPUT_KEY))  # e.g. trained on standardised slices: predict_boxes does the same
    return model


def detector_metadata(path: str | Path) -> dict:
    """ultralytics' export metadata (imgsz, names, stride, ...) of an exported detector, values as stored."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: detector weights not found (export them with `python tools/export.py`)")
    if weights_format(path) == "onnx":
        metadata = {p.key: p.value for p in _onnx_model(path).metadata_props}
    else:
        import yaml

        folder = openvino_xml(path).parent
        meta_file = folder / "metadata.yaml"
        metadata = yaml.safe_load(meta_file.read_text()) if meta_file.is_file() else None
    if not metadata or "imgsz" not in metadata:
        raise ExportedWeightsError(f"{path}: not a detector exported by ultralytics (no imgsz in its metadata; "
                                   "export it with `python tools/export.py`)")
    return metadata


def keep_detector_threads(model, weights: str | Path) -> None:
    """Thread policy of every predict: a PyTorch detector gets every core for torch; an exported one leaves
    the cores to ONNX Runtime's or OpenVINO's own pool, and torch (only pre- and post-processing then) keeps
    ultralytics' smaller count: more torch threads waiting beside those pools measured slower (2-core CPU)."""
    from mri.offline import keep_torch_threads, restore_torch_threads

    if weights_format(weights) == "pytorch":
        keep_torch_threads(model)
        restore_torch_threads()


def detector_threads(model) -> int:
    """Threads the detector's runtime uses (known after its first predict): ONNX Runtime's, OpenVINO's or torch's."""
    import torch

    backend = getattr(getattr(getattr(model, "predictor", None), "model", None), "backend", None)
    session = getattr(backend, "session", None)
    if session is not None:
        import psutil

        # 0 means ONNX Runtime's default: one thread per physical core
        return session.get_session_options().intra_op_num_threads or psutil.cpu_count(logical=False) or 1
    compiled = getattr(backend, "ov_compiled_model", None)
    if compiled is not None:
        return int(compiled.get_property("INFERENCE_NUM_THREADS"))
    return torch.get_num_threads()


def detector_image_size(model, weights: str | Path) -> int:
    """The input size a detector was trained (or exported) at."""
    from detect.model import trained_image_size

    if weights_format(weights) == "pytorch":
        return trained_image_size(model)
    import ast

    from mri.cli import resolve_path

    imgsz = detector_metadata(resolve_path(weights))["imgsz"]
    imgsz = ast.literal_eval(imgsz) if isinstance(imgsz, str) else imgsz
    return int(max(imgsz) if isinstance(imgsz, (list, tuple)) else imgsz)


# --------------------------------------------------------------------------------------------- classifier

class TorchClassifier:
    """A classifier checkpoint (``.pt``) run by PyTorch; ``module`` is the network (Grad-CAM needs it)."""

    format = "pytorch"

    def __init__(self, checkpoint: dict, device):
        from classify.checkpoint import model_from_checkpoint

        self.contract = classifier_contract(checkpoint)
        self.module = model_from_checkpoint(checkpoint, device)

    def __call__(self, batch) -> np.ndarray:
        from classify.predict import probabilities

        return probabilities(self.module, batch)

    def threads(self) -> int:
        import torch

        return torch.get_num_threads()


class OnnxClassifier:
    """An exported classifier (``.onnx``) run by ONNX Runtime (CUDA when asked for and installed)."""

    format = "onnx"
    module = None

    def __init__(self, path: Path, device):
        import onnxruntime

        self.contract = _contract_from(path, {p.key: p.value for p in _onnx_model(path).metadata_props}.get(CONTRACT_KEY))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        # idle threads sleep instead of spinning: spinning beside other work halved its speed on 2 shared cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if getattr(device, "type", "cpu") == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self._threads = options.intra_op_num_threads

    def __call__(self, batch) -> np.ndarray:
        return self.session.run(None, {self.input_name: _numpy(batch)})[0]

    def threads(self) -> int:
        return self._threads


class OpenVINOClassifier:
    """An exported classifier (``*_openvino_model/``) run by OpenVINO on the CPU."""

    format = "openvino"
    module = None

    def __init__(self, path: Path, device):
        import openvino

        core = openvino.Core()
        model = core.read_model(str(openvino_xml(path)))
        stored = model.get_rt_info([CONTRACT_KEY]).astype(str) if model.has_rt_info([CONTRACT_KEY]) else None
        self.contract = _contract_from(path, stored)
        self.compiled = core.compile_model(model, "CPU")

    def __call__(self, batch) -> np.ndarray:
        return np.asarray(self.compiled(_numpy(batch))[0])

    def threads(self) -> int:
        return int(self.compiled.get_property("INFERENCE_NUM_THREADS"))


def load_classifier(weights: str | Path, device):
    """The classifier head for ``weights`` (``.pt``, ``.onnx`` or OpenVINO folder) on a torch ``device``."""
    from classify.checkpoint import load_checkpoint
    from mri.cli import resolve_path

    kind = weights_format(weights)
    if kind == "pytorch":
        return TorchClassifier(load_checkpoint(resolve_path(weights)), device)
    path = resolve_path(weights)
    if not path.exists():
        raise ExportedWeightsError(f"{weights}: classifier weights not found (export them with `python tools/export.py`)")
    return OnnxClassifier(path, device) if kind == "onnx" else OpenVINOClassifier(path, device)


def _contract_from(path: Path, stored: str | None) -> dict:
    from classify.checkpoint import REQUIRED

    if not stored:
        raise ExportedWeightsError(f"{path}: no {CONTRACT_KEY} in its metadata: not a classifier exported by "
                                   "tools/export.py")
    contract = json.loads(stored)
    missing = [key for key in REQUIRED if key != "model" and key not in contract]
    if missing:
        raise ExportedWeightsError(f"{path}: its {CONTRACT_KEY} lacks {', '.join(missing)} (re-export it)")
    return contract


def _onnx_model(path: Path):
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf raises several types for a truncated or foreign file
        raise ExportedWeightsError(f"{path}: not a readable ONNX model ({error.__class__.__name__})") from None


def _numpy(batch) -> np.ndarray:
    array = batch.detach().cpu().numpy() if hasattr(batch, "detach") else np.asarray(batch)
    return np.ascontiguousarray(array, dtype=np.float32)
