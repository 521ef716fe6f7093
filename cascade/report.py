"""What ``tools/infer.py`` writes: boxed images, crops, results.json and results.csv, and a summary."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2

from cascade.draw import draw_detections
from cascade.sources import Skipped, output_stem
from mri.cli import resolve_path
from mri.files import new_run_dir, output_dir, printable, write_atomic, write_csv, write_json, write_yaml
from mri.offline import RUNS_DIR

CSV_FIELDS = ["image", "slice", "x1", "y1", "x2", "y2", "type", "det_score", "tumor_prob", "type_prob", "score", "kept"]


def _write_image(path: Path, image) -> None:
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise OSError(f"{path}: could not encode image")
    write_atomic(path, encoded.tobytes())


def source_name(source: str) -> str:
    """A run-folder name for a source: its last path part before any glob characters."""
    parts = [p for p in Path(str(source)).parts if not any(ch in p for ch in "*?[")]
    name = parts[-1] if parts else "scans"
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "scans"


class InferenceWriter:
    """Writes one inference run's folder. ``source`` names outputs by their path below it; ``save_crops``
    also writes each box's classifier crop; ``cam`` draws Grad-CAM heat maps; ``show_rejected`` also draws
    the boxes the classifier rejected."""

    def __init__(self, out: Path, cascade, *, source: str, det_weights: str, cls_weights: str,
                 save_crops: bool = False, cam: bool = False, show_rejected: bool = False):
        self.out, self.cascade = out, cascade
        self.source, self.det_weights, self.cls_weights = source, det_weights, cls_weights
        self.save_crops, self.cam, self.show_rejected = save_crops, cam, show_rejected
        self.records, self.skipped, self.n_processed = [], [], 0
        self.names = set()

    @classmethod
    def create(cls, cascade, *, out: str | Path | None, arguments: dict, **options) -> "InferenceWriter":
        """A writer into ``out`` (``mri.files.output_dir``: an existing non-empty folder gets a new sibling) or a
        new runs/infer/<source name>; ``arguments`` (the resolved command line) are saved there as args.yaml."""
        if out:
            folder = output_dir(resolve_path(out))
        else:
            folder = new_run_dir(RUNS_DIR / "infer", source_name(options["source"]))
        (folder / "images").mkdir()
        write_yaml(folder / "args.yaml", arguments)
        return cls(folder, cascade, **options)

    def _unique(self, stem: str) -> str:
        name, number = stem, 2
        while name in self.names:
            name, number = f"{stem}-{number}", number + 1
        self.names.add(name)
        return name

    def process(self, cascade, scans, batch_size: int) -> None:
        from tqdm import tqdm

        pending = []
        bar = tqdm(desc="infer", unit="slice")
        for scan, skipped in scans:
            if skipped is not None:
                self.skip(skipped)
                continue
            pending.append(scan)
            if len(pending) == batch_size:
                self._run(cascade, pending)
                bar.update(len(pending))
                pending = []
        if pending:
            self._run(cascade, pending)
            bar.update(len(pending))
        bar.close()

    def skip(self, skipped: Skipped) -> None:
        entry = {"path": printable(skipped.path), "reason": printable(skipped.reason)}
        self.skipped.append(entry)
        print(f"skipped {entry['path']}: {entry['reason']}")

    def _run(self, cascade, scans) -> None:
        results = cascade.run([s.image for s in scans], keep_crops=self.save_crops, cam=self.cam)
        for scan, detections in zip(scans, results):
            name = self._unique(output_stem(scan, self.source))
            drawn = draw_detections(scan.image, [{**d.as_dict(), "cam": d.cam} for d in detections], self.show_rejected)
            _write_image(self.out / "images" / f"{name}.jpg", drawn)
            boxes = []
            for index, det in enumerate(detections):
                entry = det.as_dict()
                if self.save_crops and det.crop is not None:
                    crop_path = self.out / "crops" / f"{name}_{index}_{det.type if det.kept else 'rejected'}.png"
                    crop_path.parent.mkdir(exist_ok=True)
                    _write_image(crop_path, det.crop)
                    entry["crop"] = str(crop_path.relative_to(self.out))
                boxes.append(entry)
            self.records.append({"image": printable(scan.path), "slice": scan.slice_index, "output": f"images/{name}.jpg",
                                 "width": int(scan.image.shape[1]), "height": int(scan.image.shape[0]),
                                 "pixel_spacing": scan.pixel_spacing, "detections": boxes})
            self.n_processed += 1

    def finish(self, seconds: float) -> str:
        kept = Counter(b["type"] for r in self.records for b in r["detections"] if b["kept"])
        rejected = sum(not b["kept"] for r in self.records for b in r["detections"])
        summary = {
            "slices_processed": self.n_processed,
            "files_skipped": len(self.skipped),
            "boxes_kept": sum(kept.values()),
            "boxes_rejected": rejected,
            "kept_by_type": dict(kept),
            "slices_with_tumor": sum(any(b["kept"] for b in r["detections"]) for r in self.records),
            "seconds": round(seconds, 2),
        }
        cascade = self.cascade
        write_json(self.out / "results.json", {
            "source": printable(str(self.source)),
            "settings": {"det_weights": str(self.det_weights), "cls_weights": str(self.cls_weights),
                         "det_conf": cascade.conf, "imgsz": cascade.imgsz, "tta": cascade.tta,
                         "standardise": cascade.standardise,
                         "cls_threshold": cascade.threshold, "classifier": cascade.checkpoint["arch"],
                         "crop_rule": cascade.rule.as_dict()},
            "summary": summary, "images": self.records, "skipped": self.skipped,
        })
        rows = [{"image": r["image"], "slice": "" if r["slice"] is None else r["slice"],
                 **dict(zip(("x1", "y1", "x2", "y2"), b["box"])),
                 **{k: b[k] for k in ("type", "det_score", "tumor_prob", "type_prob", "score", "kept")}}
                for r in self.records for b in r["detections"]]
        write_csv(self.out / "results.csv", rows, CSV_FIELDS)
        lines = [f"{self.n_processed} slices in {seconds:.1f} s: {summary['boxes_kept']} tumor boxes kept "
                 f"({', '.join(f'{k} {v}' for k, v in sorted(kept.items())) or 'none'}), {rejected} rejected by the classifier; "
                 f"{summary['slices_with_tumor']} slices with a tumor."]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} file(s):")
            lines += [f"  {s['path']}: {s['reason']}" for s in self.skipped]
        lines.append(f"results in {printable(str(self.out))}")
        return "\n".join(lines)
