import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import SHARED_DATA, needs_shared_data
from synthetic import YOLO_ENTRY, make_yolo_dataset, write_registry

from mri.registry import DatasetError, load_registry


def test_tiny_registry_reads_both_formats(tiny_registry):
    records = load_registry(tiny_registry).images()
    by_dataset = {name: [r for r in records if r.dataset == name] for name in ("tiny_yolo", "tiny_coco")}
    assert len(by_dataset["tiny_yolo"]) == 12 and len(by_dataset["tiny_coco"]) == 9
    assert {r.split for r in by_dataset["tiny_coco"]} == {"train", "val", "test"}  # 'valid' mapped to 'val'
    assert {c for r in by_dataset["tiny_coco"] for c in r.classes} == {"tumor"}
    assert {c for r in by_dataset["tiny_yolo"] for c in r.classes} == {"glioma", "meningioma", "pituitary"}


def test_tumor_free_images_are_negatives_not_errors(tiny_registry):
    records = load_registry(tiny_registry).images()
    negatives = [r for r in records if r.is_negative]
    assert len(negatives) == 6  # the last image of every split in both datasets
    assert all(r.boxes.shape == (0, 4) for r in negatives)


def test_coco_boxes_are_normalised_by_their_own_image_size(tiny_registry):
    record = next(r for r in load_registry(tiny_registry).images(["tiny_coco"]) if not r.is_negative)
    np.testing.assert_allclose(record.boxes[0], [0.3, 0.3, 0.5, 0.55], atol=1e-4)


def test_patient_ids_from_filename_pattern(tiny_registry):
    records = load_registry(tiny_registry).images(["tiny_yolo"])
    assert all(r.patient and r.patient.startswith("p") for r in records)


def test_patient_ids_from_csv(tmp_path, tiny_registry):
    root = tmp_path / "yolo_set"
    rows = ["file,patient"] + [f"{p.name},P{i % 2}" for i, p in enumerate(sorted((root / "images" / "train").iterdir()))]
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    entry = {**YOLO_ENTRY, "patient_id": {"csv": "meta.csv", "file_column": "file", "id_column": "patient"}}
    registry = write_registry(tmp_path / "r.yaml", {"tiny": entry})
    records = load_registry(registry).images(splits=["train"])
    assert {r.patient for r in records} == {"P0", "P1"}


def test_root_overridable_by_environment(tmp_path, tiny_registry, monkeypatch):
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "yolo_set", moved)
    monkeypatch.setenv("MRI_TINY_YOLO_ROOT", str(moved))
    records = load_registry(tiny_registry).images(["tiny_yolo"])
    assert all(str(r.path).startswith(str(moved)) for r in records)


def _single_problem(registry_path, names=None) -> str:
    with pytest.raises(DatasetError) as caught:
        load_registry(registry_path).images(names)
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0]


def test_missing_root_folder(tmp_path):
    path = write_registry(tmp_path / "r.yaml", {"gone": {**YOLO_ENTRY, "root": "nowhere"}})
    with pytest.raises(DatasetError, match=r"nowhere does not exist"):
        load_registry(path).images()


def test_unknown_format(tmp_path, tiny_registry):
    path = write_registry(tmp_path / "r.yaml", {"odd": {**YOLO_ENTRY, "format": "voc"}})
    with pytest.raises(DatasetError, match=r"unknown format 'voc'"):
        load_registry(path).images()


def test_class_map_target_must_be_a_project_class(tmp_path, tiny_registry):
    path = write_registry(tmp_path / "r.yaml", {"x": {**YOLO_ENTRY, "class_map": {"glioma": "astro"}}})
    with pytest.raises(DatasetError, match=r"'astro', which is not a project class"):
        load_registry(path).images()


def test_unmapped_class(tmp_path, tiny_registry):
    entry = {**YOLO_ENTRY, "class_map": {"glioma": "glioma", "meningioma": "meningioma"}}
    problem = _single_problem(write_registry(tmp_path / "r.yaml", {"x": entry}))
    assert "data.yaml" in problem and "unmapped class 'pituitary'" in problem


def _first_label(tmp_path, split="train"):
    return sorted((tmp_path / "yolo_set" / "labels" / split).glob("*.txt"))[0]


@pytest.mark.parametrize("content, message", [
    ("0 0.5 0.5 0.2\n", "malformed label line"),
    ("zero 0.5 0.5 0.2 0.2\n", "malformed label line"),
    ("0 0.95 0.5 0.3 0.2\n", "box outside the image"),
    ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n", "duplicate label line"),
    ("7 0.5 0.5 0.2 0.2\n", "class index 7 out of range"),
])
def test_bad_label_lines_name_file_and_line(tmp_path, tiny_registry, content, message):
    label = _first_label(tmp_path)
    label.write_text(content)
    problem = _single_problem(tiny_registry, ["tiny_yolo"])
    assert problem.startswith(f"{label}:") and message in problem


def test_label_without_image(tmp_path, tiny_registry):
    orphan = tmp_path / "yolo_set" / "labels" / "val" / "ghost.txt"
    orphan.write_text("0 0.5 0.5 0.2 0.2\n")
    problem = _single_problem(tiny_registry, ["tiny_yolo"])
    assert problem.startswith(str(orphan)) and "label file without an image" in problem


def test_coco_box_outside_image(tmp_path, tiny_registry):
    import json

    path = tmp_path / "coco_set" / "train" / "_annotations.coco.json"
    coco = json.loads(path.read_text())
    coco["annotations"][0]["bbox"] = [100, 10, 80, 20]  # the image is 120 px wide
    path.write_text(json.dumps(coco))
    assert "box outside the image" in _single_problem(tiny_registry, ["tiny_coco"])


def test_every_problem_is_reported_at_once(tmp_path, tiny_registry):
    _first_label(tmp_path, "train").write_text("0 0.5\n")
    _first_label(tmp_path, "val").write_text("0 1.5 0.5 0.2 0.2\n")
    with pytest.raises(DatasetError) as caught:
        load_registry(tiny_registry).images()
    assert len(caught.value.problems) == 2
    assert all("\n" not in line for line in caught.value.problems)


def test_unknown_dataset_name(tiny_registry):
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        load_registry(tiny_registry).images(["nope"])


@needs_shared_data
def test_shipped_registry_reads_the_shared_data():
    registry = load_registry()
    assert set(registry.datasets) == {"rf_mri4", "br35h", "rsna_axial"}
    records = registry.images()
    counts = {(r.dataset, r.split): 0 for r in records}
    for r in records:
        counts[(r.dataset, r.split)] += 1
    assert counts[("rf_mri4", "train")] == 2404 and counts[("br35h", "val")] == 135 and counts[("rsna_axial", "test")] == 75
    assert {c for r in records if r.dataset == "br35h" for c in r.classes} == {"tumor"}
    assert all(r.patient for r in records if r.dataset == "rsna_axial")
    raw = yaml.safe_load(registry.path.read_text())
    assert (SHARED_DATA / raw["datasets"]["rf_mri4"]["root"]).is_dir()


# --- bad registries: every problem one line naming the file (and line), never a traceback ---------

def _problems(registry_path, names=None) -> list[str]:
    with pytest.raises(DatasetError) as caught:
        load_registry(registry_path).images(names)
    assert all("\n" not in line for line in caught.value.problems)
    return caught.value.problems


def test_malformed_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("classes: [glioma]\ndatasets:\n  a: {format: yolo\n  b: 1\n")
    with pytest.raises(DatasetError) as caught:
        load_registry(path)
    (line,) = caught.value.problems
    assert line.startswith(f"{path}:4:") and "not valid YAML" in line


@pytest.mark.parametrize("text, message", [
    ("- classes\n- datasets\n", "must be a mapping of 'key: value' lines at the top, not a list"),
    ("classes: glioma\ndatasets: {a: {format: yolo}}\n", "'classes' must be a list of names"),
    ("classes: [glioma]\ndatasets: [a, b]\n", "'datasets' must be a mapping"),
])
def test_wrong_shapes_at_the_top_are_one_line(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(DatasetError) as caught:
        load_registry(path)
    assert any(message in line and line.startswith(str(path)) for line in caught.value.problems), caught.value.problems


def test_non_utf8_registry_is_one_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"classes: [glioma]\n# caf\xe9\n")
    with pytest.raises(DatasetError, match="not UTF-8 text"):
        load_registry(path)


@pytest.mark.parametrize("entry, message", [
    (5, "the entry must be a mapping"),
    ({**YOLO_ENTRY, "patient_id": {"pattern": "(unclosed"}}, "is not a valid regular expression"),
    ({**YOLO_ENTRY, "patient_id": {"pattern": "^p\\d+"}}, "needs a group"),
    ({**YOLO_ENTRY, "patient_id": "p"}, "patient_id needs 'pattern'"),
    ({**YOLO_ENTRY, "splits": ["train", "val"]}, "'splits' must be a mapping"),
    ({**YOLO_ENTRY, "root": 7}, "'root' must be text"),
    ({**YOLO_ENTRY, "ignore_classes": "brain"}, "'ignore_classes' must be a list"),
])
def test_bad_dataset_entries_are_one_line(tmp_path, tiny_registry, entry, message):
    path = write_registry(tmp_path / "r.yaml", {"tiny_yolo": entry})
    problems = _problems(path)
    assert any(message in line and "dataset 'tiny_yolo'" in line for line in problems), problems


def test_non_utf8_label_file_is_one_line(tmp_path, tiny_registry):
    label = _first_label(tmp_path)
    label.write_bytes(b"0 0.5 0.5 0.2 0.2 \xff\xfe\n")
    (problem,) = _problems(tiny_registry, ["tiny_yolo"])
    assert problem.startswith(str(label)) and "not a UTF-8 text label file" in problem


@pytest.mark.parametrize("text, message", [
    ("names: [a, b\n", "not valid YAML"),
    ("- names\n", "must be a mapping"),
    ("names: {zero: glioma, one: meningioma}\n", "'names' keys must be the class indices"),
    ("names: {0: glioma, 2: meningioma}\n", "'names' keys must be the class indices"),
])
def test_malformed_source_data_yaml_is_one_line(tmp_path, tiny_registry, text, message):
    data_yaml = tmp_path / "yolo_set" / "data.yaml"
    data_yaml.write_text(text)
    problems = _problems(tiny_registry, ["tiny_yolo"])
    assert any(line.startswith(str(data_yaml)) and message in line for line in problems), problems


def test_names_given_as_an_index_mapping_keep_their_order(tmp_path, tiny_registry):
    data_yaml = tmp_path / "yolo_set" / "data.yaml"
    raw = yaml.safe_load(data_yaml.read_text())
    raw["names"] = {2: "pituitary", 0: "glioma", 1: "meningioma"}
    data_yaml.write_text(yaml.safe_dump(raw))
    from mri.registry import yolo_class_names

    assert yolo_class_names(data_yaml) == ["glioma", "meningioma", "pituitary"]


def test_a_broken_dataset_does_not_hide_the_problems_of_the_others(tmp_path, tiny_registry):
    from synthetic import COCO_ENTRY

    label = _first_label(tmp_path)
    label.write_text("0 0.5\n")
    path = write_registry(tmp_path / "r.yaml", {
        "tiny_yolo": YOLO_ENTRY, "tiny_coco": COCO_ENTRY,
        "gone": {**YOLO_ENTRY, "root": "nowhere"}, "odd": {**YOLO_ENTRY, "format": "voc"}})
    registry = load_registry(path)  # entry problems wait until the dataset is used
    problems = _problems(path)
    assert any("nowhere does not exist" in line for line in problems)
    assert any("unknown format 'voc'" in line for line in problems)
    assert any(line.startswith(f"{label}:1") for line in problems)
    assert len(problems) == 3
    assert len(registry.images(["tiny_coco"])) == 9  # the datasets asked for are all that is checked
    assert _problems(path, ["tiny_yolo"]) == [p for p in problems if p.startswith(str(label))]
    with pytest.raises(DatasetError, match="nowhere does not exist"):
        registry.select(["gone"])


@pytest.mark.parametrize("name", ["no_tumor", "no_tumour", "No Tumour", "non-tumor", "nontumor", "tumor-free",
                                  "Tumour_Free", "healthy", "Normal", "negative", "background", "no", "without tumor"])
def test_names_that_say_there_is_no_tumor_are_ignored(name):
    from mri.registry import match_class_name

    assert match_class_name(name, load_registry_for_names()) is None


@pytest.mark.parametrize("name, ours", [("GLIOMA", "glioma"), ("Glioma_tumour", "glioma"), ("meningioma tumor", "meningioma"),
                                        ("pituitary", "pituitary"), ("tumor", "tumor"), ("Tumour", "tumor"), ("yes", "tumor")])
def test_tumor_names_map_to_ours(name, ours):
    from mri.registry import match_class_name

    assert match_class_name(name, load_registry_for_names()) == ours


def load_registry_for_names():
    from mri.registry import Registry

    return Registry(Path("datasets.yaml"), ["glioma", "meningioma", "pituitary"], "tumor", {}, {})


def test_foreign_data_yaml_prints_the_mapping_it_used(tmp_path):
    from mri.registry import dataset_from_path

    root = make_yolo_dataset(tmp_path / "foreign", names=("Glioma", "no_tumour", "Tumor"))
    lines = []
    spec = dataset_from_path(root / "data.yaml", load_registry_for_names(), "test", report=lines.append)
    assert spec.ignore_classes == ["no_tumour"]
    assert lines[1:] == ["  'Glioma' -> glioma", "  'no_tumour' -> ignored (no tumor)", "  'Tumor' -> tumor"]


def test_malformed_foreign_files_are_one_line(tmp_path):
    from mri.registry import dataset_from_path

    (tmp_path / "data.yaml").write_text("names: [a\n")
    (tmp_path / "coco.json").write_text('{"categories": [')
    for name in ("data.yaml", "coco.json"):
        with pytest.raises(DatasetError) as caught:
            dataset_from_path(tmp_path / name, load_registry_for_names(), "test", report=lambda line: None)
        (line,) = caught.value.problems
        assert line.startswith(f"{tmp_path / name}:") and "not valid" in line
