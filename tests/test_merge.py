import csv
import multiprocessing
import os

import pytest
import yaml

from mri.merge import merge_datasets
from mri.registry import load_registry


def test_merge_writes_an_ultralytics_dataset_with_absolute_paths(tiny_registry, tmp_path):
    merged = merge_datasets(load_registry(tiny_registry), out_dir=tmp_path / "merged")
    data = yaml.safe_load(merged.data_yaml.read_text())
    assert os.path.isabs(data["path"]) and data["names"] == ["tumor"] and data["nc"] == 1
    assert merged.counts == {"train": 9, "val": 6, "test": 6}
    images = sorted((merged.root / "images" / "train").iterdir())
    assert len(images) == 9 and all(p.resolve().is_file() for p in images)
    for image in images:
        label = merged.root / "labels" / "train" / (image.stem + ".txt")
        lines = label.read_text().split()
        assert lines == [] or lines[0] == "0"  # class-agnostic: every box is class 0


def test_every_merged_image_traces_back_to_its_source(tiny_registry, tmp_path):
    merged = merge_datasets(load_registry(tiny_registry), out_dir=tmp_path / "merged")
    with open(merged.root / "sources.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 21
    for row in rows:
        assert (merged.root / row["image"]).samefile(row["source_path"])
    assert {row["dataset"] for row in rows} == {"tiny_yolo", "tiny_coco"}
    assert all(row["patient"] for row in rows if row["dataset"] == "tiny_yolo")


def test_merge_is_deterministic_and_rebuilt_only_when_inputs_change(tiny_registry, tmp_path):
    registry = load_registry(tiny_registry)
    first = merge_datasets(registry, out_dir=tmp_path / "merged")
    stamp = first.data_yaml.stat().st_mtime_ns
    again = merge_datasets(registry, out_dir=tmp_path / "merged")
    assert again.root == first.root and again.data_yaml.stat().st_mtime_ns == stamp
    label = sorted((tmp_path / "yolo_set" / "labels" / "train").glob("*.txt"))[0]
    label.write_text("2 0.5 0.5 0.1 0.1\n")
    changed = merge_datasets(load_registry(tiny_registry), out_dir=tmp_path / "merged")
    assert changed.root != first.root and first.root.is_dir()


def test_typed_merge_keeps_types_and_drops_untyped_sources(tiny_registry, tmp_path):
    merged = merge_datasets(load_registry(tiny_registry), typed=True, out_dir=tmp_path / "merged")
    assert merged.names == ["glioma", "meningioma", "pituitary"]
    with open(merged.root / "sources.csv") as handle:
        rows = list(csv.DictReader(handle))
    # an untyped source still gives its tumor-free images as negatives, but none of its tumors
    assert {row["boxes"] for row in rows if row["dataset"] == "tiny_coco"} == {"0"}
    assert len([row for row in rows if row["dataset"] == "tiny_yolo"]) == 12
    classes = {line.split()[0] for p in (merged.root / "labels").rglob("*.txt") for line in p.read_text().splitlines()}
    assert classes == {"0", "1", "2"}


def test_leakage_free_assignment_moves_images(tiny_registry, tmp_path):
    registry_path = tiny_registry
    raw = yaml.safe_load(registry_path.read_text())
    first_val = sorted((tmp_path / "yolo_set" / "images" / "val").iterdir())[0].name
    (tmp_path / "splits.csv").write_text(
        f"dataset,source_split,file,split,group\ntiny_yolo,val,{first_val},test,0\n")
    raw["split_rules"] = {"assignment": "splits.csv"}
    registry_path.write_text(yaml.safe_dump(raw))
    merged = merge_datasets(load_registry(registry_path), out_dir=tmp_path / "merged")
    assert merged.counts == {"train": 9, "val": 5, "test": 7}
    assert (merged.root / "images" / "test" / f"tiny_yolo__val__{first_val}").exists()
    unassigned = merge_datasets(load_registry(registry_path), leakage_free=False, out_dir=tmp_path / "merged")
    assert unassigned.counts == {"train": 9, "val": 6, "test": 6}


def _merge_in_child(registry_path, out_dir, barrier):
    barrier.wait()
    merge_datasets(load_registry(registry_path), out_dir=out_dir)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork to share the patch")
def test_two_runs_merging_the_same_data_at_once_both_get_the_whole_dataset(tiny_registry, tmp_path, monkeypatch):
    import time

    import mri.merge

    original_link = mri.merge._link
    monkeypatch.setattr(mri.merge, "_link", lambda *a: (time.sleep(0.02), original_link(*a)))  # widen the race
    context = multiprocessing.get_context("fork")  # the children inherit the slowed _link
    barrier = context.Barrier(2)
    children = [context.Process(target=_merge_in_child, args=(tiny_registry, tmp_path / "merged", barrier))
                for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        if child.is_alive():
            child.terminate()
    assert [child.exitcode for child in children] == [0, 0]
    merged = merge_datasets(load_registry(tiny_registry), out_dir=tmp_path / "merged")
    with open(merged.root / "sources.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 21
    assert sum(1 for _ in merged.root.glob("images/*/*")) == 21
