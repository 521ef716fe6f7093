"""Bad input a user can give: every case is one line or a skipped file, never a traceback or lost work."""

import os
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from cascade.sources import SourceError, iter_scans
from mri import PROJECT_ROOT
from mri.cli import DeviceError, check_device
from mri.files import OutputError, new_run_dir, output_dir, printable, write_atomic, write_csv


def _png(path, seed=0):
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (16, 16), dtype=np.uint8))
    return path


# --- sources: what a batch is made of -------------------------------------------------------------

def test_symlink_loops_and_broken_links_are_skipped_with_their_reason(tmp_path):
    _png(tmp_path / "good.png")
    (tmp_path / "self.png").symlink_to("self.png")
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    (tmp_path / "gone.png").symlink_to("missing.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "folder_link").symlink_to("sub")
    results = list(iter_scans(str(tmp_path)))
    scans = [s for s, _ in results if s is not None]
    reasons = {os.path.basename(k.path): k.reason for _, k in results if k is not None}
    assert [os.path.basename(s.path) for s in scans] == ["good.png"]
    assert {"self.png", "a", "b"} <= set(reasons) and all("symbolic link loop" in reasons[n] for n in ("self.png", "a", "b"))
    assert "broken symbolic link" in reasons["gone.png"] and "missing.png" in reasons["gone.png"]
    assert "link to a folder" in reasons["folder_link"]


def test_a_symlink_loop_given_as_the_source_is_one_line(tmp_path):
    (tmp_path / "loop.png").symlink_to("loop.png")
    with pytest.raises(SourceError, match="symbolic link loop"):
        iter_scans(str(tmp_path / "loop.png"))


@pytest.mark.parametrize("source", ["", "   "])
def test_an_empty_source_is_refused_instead_of_scanning_the_current_folder(source):
    with pytest.raises(SourceError, match="the source is empty"):
        iter_scans(source)


def test_a_reader_bug_costs_one_file_not_the_batch(tmp_path, monkeypatch):
    import cascade.sources

    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", 1)
    real = cascade.sources.read_scan

    def flaky(path, **kwargs):
        if path.name == "a.png":
            raise IndexError("boom")
        return real(path, **kwargs)

    monkeypatch.setattr(cascade.sources, "read_scan", flaky)
    results = list(iter_scans(str(tmp_path)))
    assert [os.path.basename(s.path) for s, _ in results if s] == ["b.png"]
    (skipped,) = [k for _, k in results if k]
    assert "unexpected error" in skipped.reason and "IndexError: boom" in skipped.reason


# --- writing results ----------------------------------------------------------------------------

def test_non_utf8_file_names_are_written_with_their_bytes_escaped(tmp_path):
    name = os.fsdecode(b"bad_\xff.jpg")  # how Python hands over such a name from the disk
    assert printable(name) == "bad_\\xff.jpg" and printable("tumör.png") == "tumör.png"
    write_csv(tmp_path / "r.csv", [{"image": name}])
    assert (tmp_path / "r.csv").read_text(encoding="utf-8") == "image\nbad_\\xff.jpg\n"


def test_a_failed_write_leaves_no_temporary_file_and_the_old_file_intact(tmp_path, monkeypatch):
    target = write_atomic(tmp_path / "results.csv", "old\n")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "new\n")
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"] and target.read_text() == "old\n"


def test_a_write_that_must_not_overwrite_refuses_a_file_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "averaged.pt"
    assert write_atomic(target, b"first", overwrite=False).read_bytes() == b"first"
    with pytest.raises(FileExistsError):
        write_atomic(target, b"second", overwrite=False)
    assert [p.name for p in tmp_path.iterdir()] == ["averaged.pt"] and target.read_bytes() == b"first"


# --- output folders -----------------------------------------------------------------------------

def test_output_dir_never_reuses_a_folder_with_results(tmp_path):
    wanted = tmp_path / "out"
    assert output_dir(wanted) == wanted.resolve()  # new: made
    assert output_dir(wanted) == wanted.resolve()  # still empty: used
    (wanted / "metrics.json").write_text("{}")
    assert output_dir(wanted) == (tmp_path / "out-2").resolve()
    (tmp_path / "file").write_text("x")
    assert output_dir(tmp_path / "file") == (tmp_path / "file-2").resolve() and (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("make", [output_dir, lambda p: new_run_dir(p.parent, p.name)])
def test_an_output_folder_below_a_regular_file_is_one_line(tmp_path, make):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OutputError) as caught:
        make(tmp_path / "notes.txt" / "deeper" / "out")
    assert "notes.txt is a file" in str(caught.value) and "\n" not in str(caught.value)


# --- devices ------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["cpu", "", None])
def test_cpu_is_always_there(device):
    check_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["0", "0,1", "cuda:0", "cuda"])
def test_a_gpu_that_is_not_there_is_one_line(device):
    with pytest.raises(DeviceError, match="no CUDA GPU is available on this machine"):
        check_device(device)


def test_a_device_that_is_not_a_device_is_one_line():
    with pytest.raises(DeviceError, match="expected cpu, a GPU number"):
        check_device("gpu-please")


# --- detector weights ---------------------------------------------------------------------------

class _Payload:
    """Unpickling this creates a file: what a crafted checkpoint would do with something worse."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["zip", "legacy", "plain-pickle"])
def test_a_crafted_detector_file_runs_nothing(tmp_path, how):
    from detect.model import load_detector

    marker = tmp_path / "payload-ran"
    weights = tmp_path / "detector.pt"
    checkpoint = {"model": _Payload(marker), "train_args": {}}
    if how == "zip":
        torch.save(checkpoint, weights)
    elif how == "legacy":
        torch.save(checkpoint, weights, _use_new_zipfile_serialization=False)
    else:
        weights.write_bytes(pickle.dumps(checkpoint))
    with pytest.raises(ValueError) as caught:
        load_detector(weights)
    assert not marker.exists(), "unpickling the crafted file ran its payload"
    message = str(caught.value)
    assert message.startswith(str(weights)) and "invalid weights" in message and "\n" not in message


@pytest.mark.parametrize("name, standardised", [("detector.pt", False), ("candidate/detector.pt", True)])
def test_the_committed_detectors_still_load_safely(name, standardised):
    from detect.model import load_detector, trained_image_size, trained_standardised

    weights = PROJECT_ROOT / "weights" / name
    if not weights.is_file():
        pytest.skip(f"no weights/{name} in this checkout")
    model = load_detector(weights)
    assert trained_image_size(model) > 0
    assert trained_standardised(model) == standardised  # what inference does to the slices depends on it
    (result,) = model.predict(np.zeros((64, 64, 3), np.uint8), imgsz=64, verbose=False)
    assert result.boxes is not None


def test_the_committed_candidate_pair_runs_as_a_cascade_on_the_demo_scans():
    """weights/candidate/ is offered as a pair (the model card's side-by-side comparison): it must load weights-only
    and find tumors, with standardised slices for its detector and plain ones for its classifier's crops."""
    from cascade.pipeline import Cascade
    from mri.scan_io import read_scan

    pair = [PROJECT_ROOT / "weights" / "candidate" / name for name in ("detector.pt", "classifier.pt")]
    scans = sorted((PROJECT_ROOT / "demo" / "scans").glob("*.jpg"))
    if not all(p.is_file() for p in pair) or not scans:
        pytest.skip("no candidate pair or demo scans in this checkout")
    cascade = Cascade.load(*pair, tta=False)
    assert cascade.standardise == {"detector": True, "classifier": False}
    results = cascade.run([read_scan(path)[0].image for path in scans])
    assert sum(any(d.kept for d in detections) for detections in results) >= len(scans) // 2


def test_a_freshly_trained_detector_loads_safely(tiny_weights):
    from detect.model import load_detector

    model = load_detector(tiny_weights["det"])
    assert model.predict(np.zeros((96, 96, 3), np.uint8), imgsz=96, verbose=False)


# --- classifier resume --------------------------------------------------------------------------

def _classifier_checkpoint(path, **extra):
    from classify.checkpoint import REQUIRED

    torch.save({**{key: None for key in REQUIRED}, "args": {"epochs": 3}, **extra}, path)
    return path


@pytest.mark.parametrize("extra, message", [
    ({"epoch": 2, "optimizer": {}}, "this run is finished (all 3 epochs trained)"),
    ({"epoch": 0}, "not a training checkpoint (no optimizer state)"),
])
def test_classifier_resume_refuses_finished_or_final_weights(tmp_path, extra, message):
    from classify.checkpoint import CheckpointError
    from classify.train import resumable_checkpoint

    path = _classifier_checkpoint(tmp_path / "last.pt", **extra)
    with pytest.raises(CheckpointError) as caught:
        resumable_checkpoint(str(path))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_classifier_resume_takes_a_run_folder_or_its_last_pt(tmp_path):
    from classify.checkpoint import CheckpointError
    from classify.train import resumable_checkpoint

    _classifier_checkpoint(tmp_path / "last.pt", epoch=0, optimizer={})
    assert resumable_checkpoint(str(tmp_path))["epoch"] == 0
    (tmp_path / "cut.pt").write_bytes((tmp_path / "last.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a readable classifier checkpoint"):
        resumable_checkpoint(str(tmp_path / "cut.pt"))


# --- evaluate on a foreign dataset ----------------------------------------------------------------

SHIPPED = {"det": PROJECT_ROOT / "weights" / "detector.pt", "cls": PROJECT_ROOT / "weights" / "classifier.pt"}
needs_shipped_weights = pytest.mark.skipif(not all(p.is_file() for p in SHIPPED.values()), reason="no shipped weights")


def _evaluate(*flags):
    command = [sys.executable, str(PROJECT_ROOT / "tools" / "evaluate.py"), "--det-weights", str(SHIPPED["det"]),
               "--cls-weights", str(SHIPPED["cls"]), *map(str, flags)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@needs_shipped_weights
def test_evaluate_on_a_malformed_foreign_data_yaml_is_one_line(tmp_path):
    (tmp_path / "data.yaml").write_text("names: [glioma, meningioma\ntest: images/test\n")
    result = _evaluate("--data", tmp_path / "data.yaml", "--out", tmp_path / "eval")
    assert result.returncode == 2 and "not valid YAML" in result.stderr and f"{tmp_path / 'data.yaml'}:" in result.stderr
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.slow
@needs_shipped_weights
def test_evaluate_ignores_negative_class_names_and_prints_the_mapping(tmp_path):
    from synthetic import make_yolo_dataset

    root = make_yolo_dataset(tmp_path / "foreign", names=("Glioma", "no_tumour", "tumor-free"),
                             per_split={"test": 3}, size=64)
    result = _evaluate("--data", root / "data.yaml", "--split", "test", "--out", tmp_path / "eval", "--imgsz", 64)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'no_tumour' -> ignored (no tumor)" in result.stdout and "'tumor-free' -> ignored (no tumor)" in result.stdout
    assert "'Glioma' -> glioma" in result.stdout


# bench_report only formats measured JSON into Markdown: nothing random to seed
ENTRY_POINTS = sorted({*(PROJECT_ROOT / "tools").glob("*.py"), *(PROJECT_ROOT / "benchmarks").glob("*.py")}
                      - {PROJECT_ROOT / "benchmarks" / "bench_report.py"} | {
                          *(PROJECT_ROOT / p for p in ("detect/train.py", "detect/val.py", "classify/train.py", "classify/val.py"))})


@pytest.mark.parametrize("path", ENTRY_POINTS, ids=lambda p: p.relative_to(PROJECT_ROOT).as_posix())
def test_every_entry_point_takes_a_seed(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"entry_{path.parent.name}_{path.stem}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    assert "seed" in {action.dest for action in loaded.get_args_parser()._actions}


def test_relative_paths_follow_one_rule_from_any_folder(tmp_path, monkeypatch):
    """A relative path flag means the file in the current folder if there is one, else the project's."""
    from cascade.sources import list_files
    from detect.engine import model_source

    monkeypatch.chdir(tmp_path)
    demo = sorted((PROJECT_ROOT / "demo" / "scans").glob("*.jpg"))
    assert list_files("demo/scans/*.jpg") == demo and set(demo) < set(list_files("demo/scans"))
    assert model_source("weights/detector.pt") == str(PROJECT_ROOT / "weights" / "detector.pt")
    mine = tmp_path / "demo" / "scans" / "mine.jpg"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"x")
    assert list_files("demo/scans") == [mine]  # the user's own folder wins


def test_a_lock_in_a_folder_that_cannot_be_written_is_skipped(tmp_path, monkeypatch):
    from filelock import FileLock

    from mri.files import lock_if_writable

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self.lock_file))

    monkeypatch.setattr(FileLock, "acquire", refuse)  # as on a read-only mount or another user's folder
    ran = []
    with lock_if_writable(tmp_path / "x.lock"):
        ran.append(True)
    assert ran == [True]


def test_an_atomic_write_gives_the_file_the_mode_an_ordinary_write_would(tmp_path):
    """Outputs (reports, weights, the installed font) are readable as any file the user writes, not owner-only."""
    ordinary = tmp_path / "ordinary.txt"
    ordinary.write_text("x")
    written = write_atomic(tmp_path / "atomic.txt", "x")
    assert written.stat().st_mode & 0o777 == ordinary.stat().st_mode & 0o777
