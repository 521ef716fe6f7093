import importlib.util
import os
import sys
import tempfile
from functools import cache
from pathlib import Path

import pytest

# Runs made by tests (merged datasets, trainings) never land in the project's runs/, and fiftyone's
# embedded MongoDB gets a database folder of its own for each test session.
os.environ.setdefault("MRI_RUNS_DIR", tempfile.mkdtemp(prefix="mri-test-runs-"))
os.environ["FIFTYONE_DATABASE_DIR"] = tempfile.mkdtemp(prefix="mri-test-fiftyone-")
import mri.offline  # noqa: E402,F401  (offline environment for every test)

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import COCO_ENTRY, YOLO_ENTRY, make_coco_dataset, make_yolo_dataset, write_registry  # noqa: E402

@cache
def _tool(name: str):
    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(name: str, *flags) -> int:
    """``python tools/NAME.py FLAGS`` in this process (a subprocess would pay the imports again): its exit code."""
    module = _tool(name)
    return module.main(module.get_args_parser().parse_args([str(flag) for flag in flags]))


SHARED_DATA = Path(os.environ.get("MRI_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_shared_data = pytest.mark.skipif(not (SHARED_DATA / "rf_mri4").is_dir(), reason="../shared/data not present")


def plain_detector_copy(weights, target) -> Path:
    """A copy of a detector checkpoint as plain ultralytics training would have saved it (no mri_input)."""
    import torch

    from detect.model import INPUT_KEY, checkpoint_state

    state = checkpoint_state(weights)
    state.pop(INPUT_KEY, None)
    torch.save(state, target)
    return Path(target)


def standardised_detector_copy(weights, target) -> Path:
    """A copy of a detector checkpoint as training with --hyp standardised would have saved it."""
    import shutil

    from detect.model import mark_standardised

    shutil.copyfile(weights, target)
    mark_standardised(target)
    return Path(target)


@pytest.fixture
def tiny_registry(tmp_path):
    """A registry with one tiny YOLO dataset and one tiny Roboflow-COCO dataset."""
    make_yolo_dataset(tmp_path / "yolo_set")
    make_coco_dataset(tmp_path / "coco_set")
    return write_registry(tmp_path / "datasets.yaml", {"tiny_yolo": YOLO_ENTRY, "tiny_coco": COCO_ENTRY})


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A detector and a classifier trained in seconds on tiny synthetic scans: real checkpoints, poor models.
    The detector trains on standardised slices, so the tests cover the input path that needs carrying through
    inference and export; plain_detector_copy gives its raw-input twin."""
    import subprocess

    from synthetic import COCO_ENTRY, YOLO_ENTRY, make_coco_dataset, make_yolo_dataset, write_registry

    root = tmp_path_factory.mktemp("weights")
    make_yolo_dataset(root / "yolo_set", per_split={"train": 12, "val": 4, "test": 4}, size=96)
    make_coco_dataset(root / "coco_set", per_split=3, size=96)
    registry = write_registry(root / "datasets.yaml", {"tiny_yolo": YOLO_ENTRY, "tiny_coco": COCO_ENTRY})
    env = {**os.environ, "MRI_RUNS_DIR": str(root / "runs")}
    for command in (
        ["detect.train", "--registry", registry, "--epochs", "2", "--imgsz", "96", "--batch", "4", "--workers", "0",
         "--hyp", "standardised", "--project", root / "runs" / "detect", "--name", "det"],
        ["classify.train", "--registry", registry, "--arch", "baseline", "--epochs", "2", "--input-size", "32",
         "--batch", "8", "--project", root / "runs" / "classify", "--name", "cls"],
    ):
        result = subprocess.run([sys.executable, "-m", *map(str, command)], capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    return {"registry": registry, "root": root, "det": root / "runs" / "detect" / "det" / "weights" / "last.pt",
            "cls": root / "runs" / "classify" / "cls" / "last.pt"}
