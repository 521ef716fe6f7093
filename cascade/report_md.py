"""The Markdown table of ``tools/evaluate.py``: detector alone vs cascade."""

from __future__ import annotations

from mri.reporting import fmt, fmt_interval

ROWS = [  # (row name, the formatted figure of one system's block)
    ("mAP50 (class-agnostic, COCO)", lambda f: fmt(f["map50"])),
    ("mAP50, 95% bootstrap interval", lambda f: fmt_interval(f.get("map50_ci95"))),
    ("mAP50-95 (class-agnostic, COCO)", lambda f: fmt(f["map50_95"])),
    ("typed mAP50", lambda f: fmt(f["typed_map50"])),
    ("sensitivity at 0.5 FP/image", lambda f: fmt(f["sens_at_fp"]["0.5"])),
    ("sensitivity at 1 FP/image", lambda f: fmt(f["sens_at_fp"]["1"])),
    ("sensitivity at 2 FP/image", lambda f: fmt(f["sens_at_fp"]["2"])),
    ("FP/image at 0.90 sensitivity (lower is better)", lambda f: fmt(f["fp_per_image_at_sens90"])),
    ("type accuracy of matched boxes (shipped settings)", lambda f: fmt(f["type_accuracy"])),
    ("image-level tumor F1 (shipped settings)", lambda f: fmt(f["image_f1"])),
    ("sensitivity at shipped settings", lambda f: fmt(f["operating_point"]["sensitivity"])),
    ("FP/image at shipped settings", lambda f: fmt(f["operating_point"]["fp_per_image"])),
]


def _table(block: dict) -> list[str]:
    lines = ["| metric | detector alone | cascade |", "|---|---|---|"]
    for name, get in ROWS:
        lines.append(f"| {name} | {get(block['detector'])} | {get(block['cascade'])} |")
    return lines


GROUPINGS = {  # metrics key -> (what its rows are, the sentence that introduces its table)
    "by_type": ("type", "Localisation per ground-truth type"),
    "by_nesting": ("true box", "Localisation of true boxes inside another true box of their slice (probably two "
                               "labelling conventions on one lesion, e.g. its core and the whole lesion, which a "
                               "detector drawing one box per lesion rarely matches both) and of the rest"),
}
COLUMNS = [("found", "found"), ("touched", "touched"), ("area_ratio", "area ratio"),
           ("found_any", "found by a box at any confidence")]


def _localisation_table(block: dict, key: str = "by_type") -> list[str]:
    """Per group of true boxes, at shipped settings: found at IoU 0.5, touched by any box, box area over truth
    (and, where the metrics have it, found by a box at any confidence)."""
    kinds = sorted(block["detector"].get(key) or {})
    if not kinds:
        return []
    row_name, title = GROUPINGS[key]
    columns = [(name, header) for name, header in COLUMNS if name in block["detector"][key][kinds[0]]]
    headers = " | ".join(f"{header}, {system}" for _, header in columns for system in ("detector", "cascade"))
    lines = ["", f"{title} at shipped settings (found: matched at IoU 0.5; touched: any box "
             "overlaps it; area ratio: median area of the most-overlapping box over the true box's, above 1 = loose; "
             "size: median side of the true boxes, as a share of the slice's side, all and those the detector missed):",
             "", f"| {row_name} | boxes | {headers} | size | size, missed by the detector |",
             "|---|---|" + "---|" * (2 * len(columns) + 2)]
    for kind in kinds:
        det, cas = block["detector"][key][kind], block["cascade"].get(key, {}).get(kind, {})
        cells = [fmt(system.get(name)) for name, _ in columns for system in (det, cas)]
        sizes = f"{fmt(det.get('size'), 2)} | {fmt(det.get('size_missed'), 2)}"
        lines.append(f"| {kind} | {det['n_boxes']} | " + " | ".join(cells) + f" | {sizes} |")
    return lines


def _localisation_tables(block: dict) -> list[str]:
    return [line for key in GROUPINGS for line in _localisation_table(block, key)]


def _by_resolution_table(by_resolution: dict) -> list[str]:
    """Per bin of the slices' native longer side: detector and cascade mAP and sensitivity at 1 FP/image (n/a for
    a bin without tumors, where mAP is not defined)."""
    if not by_resolution:
        return []
    lines = ["", "## By the slices' native resolution (longer side, as the files are)", "",
             "| slices | images (boxes) | detector mAP50 (95% interval) / mAP50-95 / sens@1FP "
             "| cascade mAP50 (95% interval) / mAP50-95 / sens@1FP |", "|---|---|---|---|"]
    for label, block in by_resolution.items():
        boxes = block["detector"]["n_boxes"]
        cells = [f"{fmt(f['map50'])} ({fmt_interval(f.get('map50_ci95'))}) / {fmt(f['map50_95'])} / "
                 f"{fmt(f['sens_at_fp']['1'])}" if boxes else "n/a" for f in (block["detector"], block["cascade"])]
        lines.append(f"| {label} | {block['detector']['n_images']} ({boxes}) | {cells[0]} | {cells[1]} |")
    return lines


def evaluation_markdown(metrics: dict) -> str:
    settings = metrics["settings"]
    lines = [
        f"# Detector alone vs cascade: {', '.join(metrics['data'])} ({metrics['split']})",
        "",
        f"{metrics['n_images']} images, {metrics['seconds']:.0f} s. Detector {settings['det_weights']} at "
        f"{settings['imgsz']} px; classifier {settings['cls_weights']}, P(tumor) threshold {settings['cls_threshold']:.3f}. "
        "Boxes match at IoU 0.5. Curves (mAP, sensitivity at FP/image) rank every box: the detector by its score, the "
        "cascade by the classifier checkpoint's fusion of detector score and P(tumor) (geometric mean without one). 'Shipped settings': detector "
        f"confidence {settings['det_conf']}, and for the cascade only the boxes the classifier keeps. "
        "n/a: not defined (no typed boxes, or sensitivity 0.90 never reached).",
        "",
        *_table(metrics),
        *_localisation_tables(metrics),
    ]
    for name, block in metrics["per_dataset"].items():
        lines += ["", f"## {name} ({block['detector']['n_images']} images)", "", *_table(block), *_localisation_tables(block)]
    lines += _by_resolution_table(metrics.get("by_resolution"))
    if "versus_baseline" in metrics:
        lines += _versus_baseline(metrics["versus_baseline"])
    return "\n".join(lines) + "\n"


def _difference(paired: dict | None) -> str:
    if paired is None:
        return "n/a"
    return f"{paired['difference']:+.3f} ({paired['ci95'][0]:+.3f} to {paired['ci95'][1]:+.3f})"


def _versus_baseline(versus: dict) -> list[str]:
    baseline = versus["settings"]
    lines = ["", "## Against the baseline", "",
             f"mAP50 of the system above minus that of detector {baseline['det_weights']} ({baseline['imgsz']} px, "
             f"test-time augmentation {'on' if baseline['tta'] else 'off'}) with classifier {baseline['cls_weights']}, "
             "on the same images, with a paired 95% bootstrap interval (patients or duplicate groups drawn with "
             "replacement where the split says, else images; both systems scored on each draw): an interval that "
             "excludes 0 is a difference the choice of test images does not explain.", "",
             "| images | detector alone | cascade |", "|---|---|---|"]
    for name, block in [("all", versus["overall"]), *versus["per_dataset"].items()]:
        lines.append(f"| {name} | {_difference(block['detector'])} | {_difference(block['cascade'])} |")
    return lines
