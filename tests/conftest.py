import os
import sys
import tempfile
from pathlib import Path

import pytest

# Runs made by tests (merged datasets, trainings) never land in the project's runs/.
os.environ.setdefault("MRI_RUNS_DIR", tempfile.mkdtemp(prefix="mri-test-runs-"))
import mri.offline  # noqa: E402,F401  (offline environment for every test)

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import COCO_ENTRY, YOLO_ENTRY, make_coco_dataset, make_yolo_dataset, write_registry  # noqa: E402

SHARED_DATA = Path(os.environ.get("MRI_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_shared_data = pytest.mark.skipif(not (SHARED_DATA / "rf_mri4").is_dir(), reason="../shared/data not present")


@pytest.fixture
def tiny_registry(tmp_path):
    """A registry with one tiny YOLO dataset and one tiny Roboflow-COCO dataset."""
    make_yolo_dataset(tmp_path / "yolo_set")
    make_coco_dataset(tmp_path / "coco_set")
    return write_registry(tmp_path / "datasets.yaml", {"tiny_yolo": YOLO_ENTRY, "tiny_coco": COCO_ENTRY})
