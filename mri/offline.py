"""Make every third-party library work without the network, before any of them is imported.

Every entry point imports this module first (``import mri.offline``). It sets the environment that
ultralytics, timm/Hugging Face and fiftyone read at import time, gives ultralytics a config folder the
project owns (with a real TTF as ``Arial.ttf``, so nothing tries to download a font), and turns their
telemetry off (OpenVINO's too). ``restore_torch_threads`` undoes ultralytics' one-thread training on small
machines, and ``keep_torch_threads`` does the same for every ``predict``.
"""

import os
import sys
from pathlib import Path

from mri import PROJECT_ROOT
from mri.files import write_atomic

CACHE_DIR = Path(os.environ.get("MRI_CACHE_DIR", PROJECT_ROOT / ".cache")).resolve()
RUNS_DIR = Path(os.environ.get("MRI_RUNS_DIR", PROJECT_ROOT / "runs")).resolve()
ULTRALYTICS_CONFIG_DIR = CACHE_DIR / "ultralytics"

_OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",
    "YOLO_CONFIG_DIR": str(ULTRALYTICS_CONFIG_DIR),
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "FIFTYONE_DO_NOT_TRACK": "true",
    "FIFTYONE_DATABASE_VALIDATION": "false",
    "MPLBACKEND": "Agg",
    # OpenMP threads that sleep while waiting, instead of spinning: on a shared 2-core machine, spinning made
    # torch with 2 threads 10x slower than with 1 (7 vs 77 images/s, detector predict); sleeping, as fast.
    "OMP_WAIT_POLICY": "PASSIVE",
}


def _install_font(config_dir: Path) -> None:
    """Ultralytics draws labels with Arial.ttf and downloads it when missing; give it DejaVu Sans."""
    target = config_dir / "Arial.ttf"
    if target.is_file() and target.stat().st_size > 0:
        return
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    # each process its own temporary file: tools started side by side install the font at the same moment
    font = dejavu.read_bytes()
    unicode_target = config_dir / "Arial.Unicode.ttf"
    for path in [target] + ([] if unicode_target.exists() else [unicode_target]):
        write_atomic(path, font)


def configure() -> None:
    """Set the offline environment (keeping values the user already set) and prepare config folders."""
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    config_dir = Path(os.environ["YOLO_CONFIG_DIR"])
    # ultralytics keeps its font and settings.json in a sub-folder named after itself.
    _install_font(config_dir / "Ultralytics")
    _silence_openvino_telemetry()


def _silence_openvino_telemetry() -> None:
    """``import openvino`` sends a usage event unless a consent file in the user's home says no; with its
    telemetry package unimportable, OpenVINO falls back to the no-op stub it ships for that case."""
    sys.modules.setdefault("openvino_telemetry", None)


def disable_ultralytics_sync() -> None:
    """Switch off ultralytics' hub sync and telemetry in its (project-owned) settings file."""
    from ultralytics.utils import SETTINGS

    wanted = {"sync": False, "hub": False} if "hub" in SETTINGS else {"sync": False}
    if any(SETTINGS.get(key) != value for key, value in wanted.items()):
        SETTINGS.update(wanted)


def restore_torch_threads(trainer=None) -> None:
    """Use every core: ultralytics trains with one thread on small CPUs (about 1.7x slower on 2 cores)."""
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))


def keep_torch_threads(model) -> None:
    """Use every core in each ``predict`` of an ultralytics model: selecting the device there sets torch to
    one thread on small CPUs (cores - 1), and it does so on every new predictor, after any earlier restore."""
    model.add_callback("on_predict_start", restore_torch_threads)


configure()
