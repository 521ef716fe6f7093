"""Training works with the network cut off and writes nothing outside its own folders."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from synthetic import make_yolo_dataset

from mri import PROJECT_ROOT

BLOCK_SOCKETS = textwrap.dedent("""
    import socket

    _connect = socket.socket.connect

    def _refuse(self, address):
        if self.family == socket.AF_UNIX:
            return _connect(self, address)
        raise OSError(f"network blocked by test: {address}")

    socket.socket.connect = _refuse
    socket.socket.connect_ex = lambda self, address: _refuse(self, address)
    socket.create_connection = lambda address, *a, **k: (_ for _ in ()).throw(OSError(f"network blocked by test: {address}"))
""")

TRAIN_ONE_EPOCH = textwrap.dedent("""
    import sys
    import mri.offline
    from ultralytics import YOLO
    from detect.engine import MRIDetectionTrainer
    mri.offline.disable_ultralytics_sync()
    YOLO("yolov5n.yaml").train(trainer=MRIDetectionTrainer, data=sys.argv[1], project=sys.argv[2], name="offline",
                               epochs=1, imgsz=64, batch=4, workers=0, device="cpu", plots=True, single_cls=True)
""")


def _snapshot(folder: Path) -> dict:
    if not folder.exists():
        return {}
    skip = {".git", ".venv", ".pytest_cache", "__pycache__"}
    found = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            if name.endswith(".log"):  # logs of unrelated background jobs a developer may be running
                continue
            path = Path(root) / name
            try:
                found[str(path)] = path.stat().st_mtime_ns
            except FileNotFoundError:
                pass
    return found


def test_one_epoch_training_offline_stays_in_its_folders(tmp_path):
    import ultralytics

    data_root = make_yolo_dataset(tmp_path / "data", per_split={"train": 6, "val": 2}, size=64)
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"path": str(data_root), "train": "images/train", "val": "images/val",
                                         "names": ["glioma", "meningioma", "pituitary"]}))
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(BLOCK_SOCKETS)
    watched = [PROJECT_ROOT, Path(ultralytics.__file__).parent, Path.home() / ".config" / "Ultralytics"]
    before = [_snapshot(folder) for folder in watched]

    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "HF_", "FIFTYONE_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(tmp_path / "block"), str(PROJECT_ROOT)]),
               MRI_CACHE_DIR=str(tmp_path / "cache"), MRI_RUNS_DIR=str(tmp_path / "runs"))
    result = subprocess.run([sys.executable, "-c", TRAIN_ONE_EPOCH, str(data_yaml), str(tmp_path / "runs")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert (tmp_path / "runs" / "offline" / "weights" / "last.pt").is_file()
    assert (tmp_path / "cache" / "ultralytics" / "Ultralytics" / "Arial.ttf").is_file()
    for folder, old in zip(watched, before):
        new = _snapshot(folder)
        changed = sorted(p for p in new if old.get(p) != new[p])
        assert not changed, f"training wrote outside its folders: {changed[:5]}"
    settings = json.loads((tmp_path / "cache" / "ultralytics" / "Ultralytics" / "settings.json").read_text())
    assert settings["sync"] is False


def test_tools_started_side_by_side_share_a_fresh_font_folder(tmp_path):
    """Two tools started at once (compare_recipes next to detect.train) both install the font; neither fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env.update(MRI_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(PROJECT_ROOT))
    # what another process's half-done install leaves under a fixed temporary name: a shared name always fails on it
    (tmp_path / "cache" / "ultralytics" / "Ultralytics" / "Arial.tmp").mkdir(parents=True)
    starts = [subprocess.Popen([sys.executable, "-c", "import mri.offline"], env=env, cwd=tmp_path,
                               stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in starts]
    assert [p.returncode for p in starts] == [0] * 6, "\n".join(errors)
    font = tmp_path / "cache" / "ultralytics" / "Ultralytics" / "Arial.ttf"
    import matplotlib

    assert font.read_bytes() == (Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf").read_bytes()
    assert not [p.name for p in font.parent.iterdir() if p.name.startswith(".")]
    assert font.stat().st_mode & 0o777 == 0o644  # other users of a shared cache can read it
