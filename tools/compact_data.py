"""Write a smaller copy of the registry's datasets: same layout and file names, images downscaled.

    python tools/compact_data.py --out /tmp/compact --max-side 320        # every registry dataset
    MRI_DATA_DIR=/tmp/compact python -m detect.train --imgsz 320 ...      # then train from the copy

For moving data to a training machine with little disk or transfer room. Images whose longer side exceeds
``--max-side`` are resized (aspect kept) and re-encoded as JPEG (``--gray`` stores one channel); every
other file (YOLO labels, data.yaml, meta.csv) is copied as is; COCO annotation files are rewritten with
boxes, areas and sizes in the new pixels. YOLO labels are normalised, so they stay valid unchanged. File
names are kept, so the leakage-free split assignment still applies. Training at ``--imgsz`` no larger
than ``--max-side`` sees the same pixels as from the originals (ultralytics resizes to ``imgsz`` anyway).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import cv2

import mri.offline  # noqa: F401
from mri.cli import resolve_path
from mri.files import write_atomic, write_yaml
from mri.registry import DatasetError, load_registry

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="new folder for the copy (refused if it exists and is not empty)")
    parser.add_argument("--datasets", nargs="+", default=None, help="registry datasets to copy (default: all)")
    parser.add_argument("--registry", default=None, help="datasets.yaml to read (default: the project's)")
    parser.add_argument("--max-side", type=int, default=320, help="longest image side in pixels after the copy")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of resized images")
    parser.add_argument("--gray", action="store_true", help="store resized images with one channel")
    parser.add_argument("--seed", type=int, default=0, help="unused (nothing is random); kept for a uniform CLI")
    return parser


def compact_image(source: Path, target: Path, max_side: int, quality: int, gray: bool) -> float:
    """Copy one image, downscaled to ``max_side``; returns the scale factor applied (1.0: copied as is)."""
    image = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{source}: not a readable image")
    scale = max_side / max(image.shape[:2])
    if scale >= 1.0:
        shutil.copyfile(source, target)
        return 1.0
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"{source}: could not encode the resized image")
    write_atomic(target, encoded.tobytes())
    return scale


def rescale_coco(annotations: dict, scales: dict[str, float]) -> dict:
    """A COCO annotation dict with every image's size and boxes multiplied by its file's scale."""
    image_scale = {}
    for image in annotations.get("images", []):
        scale = scales.get(image["file_name"], 1.0)
        image_scale[image["id"]] = scale
        image["width"], image["height"] = round(image["width"] * scale), round(image["height"] * scale)
    for annotation in annotations.get("annotations", []):
        scale = image_scale.get(annotation["image_id"], 1.0)
        annotation["bbox"] = [v * scale for v in annotation["bbox"]]
        annotation["area"] = annotation.get("area", 0) * scale * scale
        annotation.pop("segmentation", None)
    return annotations


def compact_dataset(root: Path, out: Path, max_side: int, quality: int, gray: bool) -> tuple[int, int]:
    """Copy one dataset folder; returns (images, other files)."""
    scales_by_folder: dict[Path, dict[str, float]] = {}
    images = others = 0
    for source in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = source.relative_to(root)
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix.lower() in IMAGE_SUFFIXES:
            scale = compact_image(source, target, max_side, quality, gray)
            scales_by_folder.setdefault(source.parent, {})[source.name] = scale
            images += 1
        elif source.suffix != ".cache":  # ultralytics' label caches hold the original paths: rebuilt on use
            shutil.copyfile(source, target)
            others += 1
    for source in root.rglob("*.json"):
        annotations = json.loads(source.read_text())
        if "images" in annotations and "annotations" in annotations:
            scales = scales_by_folder.get(source.parent, {})
            write_atomic(out / source.relative_to(root), json.dumps(rescale_coco(annotations, scales)))
    return images, others


def main(args) -> int:
    out = resolve_path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"{out}: exists and is not an empty folder; choose a new --out", file=sys.stderr)
        return 2
    try:
        specs = load_registry(args.registry).select(args.datasets)
    except DatasetError as error:
        print(error, file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        images, others = compact_dataset(spec.root, out / spec.root.name, args.max_side, args.quality, args.gray)
        print(f"{spec.name}: {images} images, {others} other files -> {out / spec.root.name}")
    write_yaml(out / "compact_args.yaml", vars(args))
    print(f"use it with MRI_DATA_DIR={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
