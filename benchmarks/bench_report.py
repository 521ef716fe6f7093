"""Gather one release's measurements into benchmarks/REPORT.md (and copy the JSON beside it).

    make bench                       # measures everything into runs/bench-<time>/ and calls this
    python benchmarks/bench_report.py --from runs/bench-20261127-0210 --compare runs/bench/compare_classifiers
    python benchmarks/bench_report.py --from runs/bench/cascade --only inference   # replace just that section

Reads, from the --from folder: eval/<dataset>/metrics.json (tools/evaluate.py on each test split),
detect-val/metrics.json, classify-val/metrics.json, bench-audit/, bench-detect/bench_detect.json and
bench-cascade/bench_cascade.json; compare_classifiers.json from --compare, compare_recipes.json from
--recipes (its folders, or the JSON files themselves: those committed beside this report regenerate its
tables) and the held-out cascade's metrics.json from --heldout. A section whose measurement is not given
or not found (audit, training or inference throughput not in --from; --recipes, --heldout or --compare
absent or empty) is carried over from the existing REPORT.md as it was, with the date it was measured.
With --only inference, the
--from folder holds bench_cascade.json (or bench-cascade/bench_cascade.json) and only the inference section
of the existing REPORT.md is replaced; every other section stays as it was.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from mri import PROJECT_ROOT
from mri.cli import resolve_path
from mri.files import write_atomic
from mri.reporting import fmt, fmt_interval, machine, utc_now


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", required=True, help="the folder make bench measured into")
    parser.add_argument("--compare", default=None, help="folder of benchmarks/compare_classifiers.py's report")
    parser.add_argument("--recipes", nargs="+", default=None,
                        help="benchmarks/compare_recipes.py's reports, shown in this order: their folders or "
                             "compare_recipes*.json files")
    parser.add_argument("--heldout", default=None,
                        help="folder of tools/evaluate.py on a held-out source (both heads trained without it)")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "benchmarks"))
    parser.add_argument("--model-card", default=str(PROJECT_ROOT / "weights" / "README.md"),
                        help="model card whose measured block (between the MEASURED markers) is rewritten from the "
                             "same JSON files; 'none' leaves it alone")
    parser.add_argument("--only", choices=["inference"], default=None,
                        help="regenerate only this section of the existing REPORT.md")
    return parser


INFERENCE_HEADING = "## Inference throughput (`python benchmarks/bench_cascade.py`)"
MEASURED_START = "<!-- MEASURED: written by benchmarks/bench_report.py from benchmarks/*.json; edits here are overwritten -->"
MEASURED_END = "<!-- /MEASURED -->"


def section_bounds(lines: list[str], heading: str) -> tuple[int, int] | None:
    """Line indices [start, end) of the section under ``heading`` (up to the next ``## ``); None if absent."""
    if heading not in lines:
        return None
    start = lines.index(heading)
    return start, next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))


def replace_section(report: str, heading: str, lines: list[str]) -> str:
    """``report`` with the section under ``heading`` (up to the next ``## ``) replaced by ``lines``; appended if absent."""
    old = report.split("\n")
    bounds = section_bounds(old, heading)
    if bounds is None:
        return report.rstrip("\n") + "\n\n" + "\n".join([heading, "", *lines]) + "\n"
    start, end = bounds
    tail = old[end:] if end < len(old) else [""]
    return "\n".join(old[:start] + [heading, "", *lines, ""] + tail)


def inference_only(source: Path, out: Path) -> int:
    bench = next((p for p in (source / "bench_cascade.json", source / "bench-cascade" / "bench_cascade.json") if p.is_file()), None)
    report_file = out / "REPORT.md"
    if bench is None or not report_file.is_file():
        print(f"error: {source}: no bench_cascade.json, or {report_file} missing", file=sys.stderr)
        return 2
    lines = bench_cascade_lines(json.loads(bench.read_text()))
    write_atomic(report_file, replace_section(report_file.read_text(), INFERENCE_HEADING, lines))
    shutil.copyfile(bench, out / "bench_cascade.json")
    print(f"inference section of {report_file} regenerated from {bench}")
    return 0


def recipe_report_file(path: Path) -> Path:
    """compare_recipes.json of a report folder, or the JSON file itself."""
    return path if path.suffix == ".json" else path / "compare_recipes.json"


def recipe_reports(paths: list[str], out: Path) -> dict[Path, Path]:
    """Each recipe report given (a folder's compare_recipes.json, or a JSON file) -> the file it is kept as beside
    REPORT.md: one already there stays itself; a folder's as compare_recipes_<folder>.json; any other JSON file under
    its own name. ValueError in one line when two would be kept under one name (one would replace the other)."""
    reports = {}
    for given in paths:
        report = recipe_report_file(resolve_path(given))
        if report.parent.resolve() == out.resolve():
            copy = report
        else:
            copy = out / (f"compare_recipes_{report.parent.name}.json" if report.name == "compare_recipes.json" else report.name)
        if copy.resolve() in {c.resolve() for c in reports.values()}:
            raise ValueError(f"{given}: would be kept as {copy.name}, as another report given is; rename its folder or file")
        reports[report] = copy
    return reports


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


AUDIT_HEADING = "## Duplicate and leakage audit (`python benchmarks/bench_audit.py`)"
TRAINING_HEADING = "## Training throughput (`python benchmarks/bench_detect.py`)"
RECIPES_HEADING = "## Detector recipes at equal budget (`python benchmarks/compare_recipes.py`)"
HELDOUT_HEADING = "## The cascade on a source it never saw (`python tools/evaluate.py --data SOURCE --split all`)"
CLASSIFIERS_HEADING = "## Classifier comparison (`python benchmarks/compare_classifiers.py`)"


def carried_over(report_file: Path, heading: str, given) -> list[str]:
    """``heading``'s section as the existing report has it, for a measurement not given or not found (said so)."""
    old = old_section(report_file, heading)
    if given:
        where = " ".join(given) if isinstance(given, list) else given
        kept = "kept as it was" if old else "left out (the report had no such section)"
        print(f"{where}: no report found there; '{heading[3:]}' {kept}", file=sys.stderr)
    return old


def old_section(report_file: Path, heading: str) -> list[str]:
    """The lines of ``heading``'s section in an existing report (empty if there is none)."""
    if not report_file.is_file():
        return []
    old = report_file.read_text().split("\n")
    bounds = section_bounds(old, heading)
    return old[bounds[0] : bounds[1]] if bounds else []


def heldout_section(metrics: dict, fusion: bool) -> list[str]:
    d, c = metrics["detector"], metrics["cascade"]
    ranking = ("the classifier checkpoint's fitted fusion of both scores" if fusion
               else "the geometric mean of detector score and P(tumor) (`--no-fusion`)")
    rows = [("mAP50", "map50"), ("mAP50-95", "map50_95")]
    lines = [HELDOUT_HEADING, "",
             f"Both heads trained without `{', '.join(sorted(metrics.get('per_dataset', {})) or ['?'])}` (and without every "
             f"image the audit links to it), scored on all {metrics['n_images']} of its images. Curves rank the cascade's "
             f"boxes by {ranking}; the operating point is each system's shipped setting; detector "
             f"{'with test-time augmentation' if metrics.get('settings', {}).get('tta') else 'single-scale'}.", "",
             "| | detector alone | cascade |", "|---|---|---|"]
    lines += [f"| {label} | {fmt(d[key])} | {fmt(c[key])} |" for label, key in rows]
    lines += [f"| sensitivity at {rate} FP/image | {fmt(d['sens_at_fp'][rate])} | {fmt(c['sens_at_fp'][rate])} |"
              for rate in d["sens_at_fp"]]
    lines += [f"| FP/image at 0.90 sensitivity | {fmt(d['fp_per_image_at_sens90'], 2)} | {fmt(c['fp_per_image_at_sens90'], 2)} |"]
    if "operating_point" in d and "operating_point" in c:
        lines += [f"| operating point: sensitivity / FP per image | {fmt(d['operating_point']['sensitivity'])} / "
                  f"{fmt(d['operating_point']['fp_per_image'], 2)} | {fmt(c['operating_point']['sensitivity'])} / "
                  f"{fmt(c['operating_point']['fp_per_image'], 2)} |"]
    return lines


def detection_section(evaluations: dict) -> list[str]:
    lines = ["## Detection and cascade quality (leakage-free test splits)", "",
             f"`python tools/evaluate.py --data <dataset> --split test` with the shipped weights{tta_note(evaluations)}. FP/image at 0.90 "
             "sensitivity: lower is better; n/a where 0.90 sensitivity is never reached. The interval: 1,000 bootstrap draws of "
             "the split's patient/duplicate groups (`map50_ci95`).", "",
             "| test split | images | mAP50 detector | mAP50 cascade | mAP50 cascade, 95% interval | mAP50-95 detector | "
             "mAP50-95 cascade | sens@1FP detector | sens@1FP cascade | FP/img@0.90 detector | FP/img@0.90 cascade | "
             "type accuracy | image F1 detector | image F1 cascade |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in evaluations.items():
        d, c = m["detector"], m["cascade"]
        lines.append(f"| {name} | {m['n_images']} | {fmt(d['map50'])} | {fmt(c['map50'])} | "
                     f"{fmt_interval(c.get('map50_ci95'))} | {fmt(d['map50_95'])} | "
                     f"{fmt(c['map50_95'])} | {fmt(d['sens_at_fp']['1'])} | {fmt(c['sens_at_fp']['1'])} | "
                     f"{fmt(d['fp_per_image_at_sens90'])} | {fmt(c['fp_per_image_at_sens90'])} | {fmt(c['type_accuracy'])} | "
                     f"{fmt(d['image_f1'])} | {fmt(c['image_f1'])} |")
    return lines


def by_type_section(evaluations: dict) -> list[str]:
    """Per ground-truth type, at the shipped operating point: found, touched at all, and box looseness."""
    rows = []
    for name, m in evaluations.items():
        d, c = m["detector"].get("by_type") or {}, m["cascade"].get("by_type") or {}
        for kind, det in d.items():
            cas = c.get(kind, {})
            rows.append(f"| {name} | {kind} | {det['n_boxes']} | {fmt(det['found'])} / {fmt(cas.get('found'))} | "
                        f"{fmt(det['touched'])} / {fmt(cas.get('touched'))} | {fmt(det['area_ratio'], 2)} / "
                        f"{fmt(cas.get('area_ratio'), 2)} | {fmt(det.get('size'), 2)} | {fmt(det.get('size_missed'), 2)} |")
    if not rows:
        return []
    return ["## Localisation per tumor type (same evaluations)", "",
            "At the shipped operating point, detector / cascade in each cell. Found: matched at IoU 0.5; touched: any "
            "output box overlaps the tumor at all (the rest are missed outright); area ratio: median area of the "
            "most-overlapping box over the true box's (above 1: boxes too loose); size: median side of the true boxes as "
            "a share of the slice's side, all of them and those the detector missed.", "",
            "| test split | type | boxes | found | touched | area ratio | size | size, missed by the detector |",
            "|---|---|---|---|---|---|---|---|", *rows]


def tta_note(evaluations: dict) -> str:
    """How the evaluations ran the detector, from their own settings."""
    modes = {bool(m.get("settings", {}).get("tta")) for m in evaluations.values()}
    return {frozenset({True}): ", the default: detector with test-time augmentation",
            frozenset({False}): ", detector single-scale"}.get(frozenset(modes), ", detector mixed single-scale/TTA")


def model_card_lines(evaluations: dict, detect_val: dict | None, classify_val: dict | None) -> list[str]:
    """The model card's measured block: the shipped weights' figures, from the same JSON as REPORT.md."""
    lines = ["Leakage-free test splits, shipped weights (`python tools/evaluate.py --data <dataset> --split test`"
             f"{tta_note(evaluations)}). "
             "Detector / cascade in each cell; the operating point is the shipped setting (detector confidence 0.25, "
             "the classifier's default threshold): sensitivity / false positives per image, detector alone -> cascade.",
             "", "| test split | images | mAP50 | mAP50-95 | sensitivity at 1 FP/image | FP/image at 0.90 sensitivity | "
             "type accuracy (cascade) | operating point |", "|---|---|---|---|---|---|---|---|"]
    for name, m in evaluations.items():
        d, c = m["detector"], m["cascade"]
        od, oc = d["operating_point"], c["operating_point"]
        lines.append(f"| {name} | {m['n_images']} | {fmt(d['map50'])} / {fmt(c['map50'])} | {fmt(d['map50_95'])} / "
                     f"{fmt(c['map50_95'])} | {fmt(d['sens_at_fp']['1'])} / {fmt(c['sens_at_fp']['1'])} | "
                     f"{fmt(d['fp_per_image_at_sens90'], 2)} / {fmt(c['fp_per_image_at_sens90'], 2)} | "
                     f"{fmt(c['type_accuracy']) if c['type_accuracy'] is not None else 'n/a (untyped)'} | "
                     f"{fmt(od['sensitivity'])} / {fmt(od['fp_per_image'])} -> {fmt(oc['sensitivity'])} / {fmt(oc['fp_per_image'])} |")
    if detect_val:
        o = detect_val["overall"]
        per_split = ", ".join(f"{k} {fmt(v['coco']['map50'])} / {fmt(v['coco']['map50_95'])}"
                              for k, v in sorted(detect_val.get("per_dataset", {}).items()))
        sensitivities = " / ".join(fmt(v) for v in o["sens_at_fp"].values())
        lines += ["", f"The detector alone, single-scale, on all test splits together (`python -m detect.val --weights weights/detector.pt`): "
                  f"COCO mAP50 {fmt(o['coco']['map50'])}, mAP50-95 {fmt(o['coco']['map50_95'])} (ultralytics' own figures "
                  f"on the same predictions {fmt(o['ultralytics']['map50'])} / {fmt(o['ultralytics']['map50_95'])})"
                  + (f"; per split {per_split}" if per_split else "") + f"; sensitivity {sensitivities} at "
                  f"{' / '.join(o['sens_at_fp'])} false positives per image."]
    if classify_val:
        o, thresholds = classify_val["overall"], classify_val.get("thresholds", {})
        lines += ["", f"The classifier on {classify_val['n_crops']} test crops (`python -m classify.val --weights "
                  f"weights/classifier.pt`): tumor-vs-not F1 {fmt(o['tumor_f1'])} (precision {fmt(o['tumor_precision'])}, "
                  f"recall {fmt(o['tumor_recall'])}, ROC-AUC {fmt(o['roc_auc'])}) at the max-F1 threshold"
                  + (f" {fmt(thresholds['max_f1'])}" if "max_f1" in thresholds else "")
                  + f"; type accuracy {fmt(o['type_accuracy'])}, macro-F1 {fmt(o['type_macro_f1'])}"
                  + (f"; default threshold {fmt(thresholds['default'])}" if "default" in thresholds else "") + "."]
    return lines


def replace_measured_block(text: str, lines: list[str]) -> str | None:
    """``text`` with the block between the MEASURED markers replaced by ``lines``; None if it has no such block."""
    if MEASURED_START not in text or MEASURED_END not in text:
        return None
    head, rest = text.split(MEASURED_START, 1)
    tail = rest.split(MEASURED_END, 1)[1]
    return head + "\n".join([MEASURED_START, *lines, MEASURED_END]) + tail


def update_model_card(path: Path, evaluations: dict, detect_val: dict | None, classify_val: dict | None) -> None:
    if not evaluations:
        return
    card = replace_measured_block(path.read_text(), model_card_lines(evaluations, detect_val, classify_val))
    if card is None:
        print(f"{path}: no MEASURED block to rewrite; model card left as it is", file=sys.stderr)
        return
    write_atomic(path, card)
    print(f"measured block of {path} rewritten")


def main(args) -> int:
    source = resolve_path(args.source)
    out = resolve_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only == "inference":
        return inference_only(source, out)
    evaluations = {p.parent.name: _read(p) for p in sorted((source / "eval").glob("*/metrics.json"))}
    detect_val = _read(source / "detect-val" / "metrics.json")
    classify_val = _read(source / "classify-val" / "metrics.json")
    bench_detect = _read(source / "bench-detect" / "bench_detect.json")
    bench_cascade = _read(source / "bench-cascade" / "bench_cascade.json")
    compare_dir = resolve_path(args.compare) if args.compare else None
    compare_md = (compare_dir / "compare_classifiers.md") if compare_dir else None

    lines = ["# Benchmark report", "", f"Generated {utc_now()} on {machine()} from `{source.relative_to(PROJECT_ROOT) if source.is_relative_to(PROJECT_ROOT) else source}` "
             "by `python benchmarks/bench_report.py` (see `make bench`). Every number below was measured by the command named "
             "with it; the JSON files beside this report hold them all.", ""]
    if evaluations:
        lines += detection_section(evaluations) + [""]
        by_type = by_type_section(evaluations)
        lines += [*by_type, ""] if by_type else []
    if detect_val:
        o = detect_val["overall"]
        lines += ["## Detector alone, single-scale, all test splits together (`python -m detect.val`)", "",
                  f"COCO mAP50 {fmt(o['coco']['map50'])}, mAP50-95 {fmt(o['coco']['map50_95'])} (ultralytics' own "
                  f"computation on the same predictions: {fmt(o['ultralytics']['map50'])} / {fmt(o['ultralytics']['map50_95'])}); "
                  f"precision {fmt(o['precision'])} and recall {fmt(o['recall'])} at confidence {o['conf']}.", "",
                  "| FP/image | " + " | ".join(o["sens_at_fp"]) + " |", "|---|" + "---|" * len(o["sens_at_fp"]),
                  "| sensitivity | " + " | ".join(fmt(v) for v in o["sens_at_fp"].values()) + " |", ""]
    if classify_val:
        o = classify_val["overall"]
        lines += ["## Classifier on test crops (`python -m classify.val --weights weights/classifier.pt`)", "",
                  f"Tumor-vs-not F1 {fmt(o['tumor_f1'])} (precision {fmt(o['tumor_precision'])}, recall {fmt(o['tumor_recall'])}, "
                  f"ROC-AUC {fmt(o['roc_auc'])}) at the max-F1 threshold; type accuracy {fmt(o['type_accuracy'])}, "
                  f"type macro-F1 {fmt(o['type_macro_f1'])}; {classify_val['n_crops']} crops.", "",
                  "| dataset | crops | tumor F1 | type accuracy |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['n']} | {fmt(v['tumor_f1'])} | {fmt(v['type_accuracy'])} |" for k, v in classify_val["per_dataset"].items()]
        lines += [""]
    report_file = out / "REPORT.md"
    try:
        recipes = recipe_reports(args.recipes or [], out)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    missing = [report for report in recipes if not report.is_file()]
    if missing and len(missing) < len(recipes):  # rebuilt from some, the others' tables would silently go
        print(f"{missing[0]}: not found, while other recipe reports given are; give all or none", file=sys.stderr)
        return 2
    if recipes and not missing:
        from detect.compare import render

        lines += [RECIPES_HEADING, ""]
        lines += [line for f in recipes for line in (render(json.loads(f.read_text())).split("\n", 2)[2].strip(), "")]
    else:
        lines += carried_over(report_file, RECIPES_HEADING, args.recipes)
    heldout = _read(resolve_path(args.heldout) / "metrics.json") if args.heldout else None
    if heldout:
        import yaml

        settings = yaml.safe_load((resolve_path(args.heldout) / "args.yaml").read_text()) or {}
        lines += heldout_section(heldout, settings.get("fusion", True)) + [""]
    else:
        lines += carried_over(report_file, HELDOUT_HEADING, args.heldout)
    if compare_md and compare_md.is_file():
        body = compare_md.read_text().split("\n", 2)[2]
        lines += [CLASSIFIERS_HEADING, "", body.strip(), ""]
    else:
        lines += carried_over(report_file, CLASSIFIERS_HEADING, args.compare)
    bench_audit = _read(source / "bench-audit" / "bench_audit.json")
    if bench_audit:
        lines += [AUDIT_HEADING, "",
                  f"{bench_audit['n_images']} images in {bench_audit['median_seconds']['total_s']} s "
                  f"(median of {bench_audit['repeats']} runs; target: under 120 s).", ""]
    else:
        lines += old_section(report_file, AUDIT_HEADING)
    if bench_detect:
        lines += [TRAINING_HEADING, "",
                  f"Ours {bench_detect['ours']['images_per_s']} images/s vs plain ultralytics "
                  f"{bench_detect['plain_ultralytics']['images_per_s']} images/s: **{bench_detect['speedup']}x** "
                  f"({bench_detect['date']}, {bench_detect['machine']}).", ""]
    else:
        lines += old_section(report_file, TRAINING_HEADING)
    if bench_cascade:
        lines += [INFERENCE_HEADING, "", *bench_cascade_lines(bench_cascade), ""]
    else:
        lines += old_section(report_file, INFERENCE_HEADING)
    write_atomic(out / "REPORT.md", "\n".join(lines))
    for path in [*(source / "eval").glob("*/metrics.json")]:
        shutil.copyfile(path, out / f"eval_{path.parent.name}.json")
    for name, path in {"detect_val.json": source / "detect-val" / "metrics.json",
                       "classify_val.json": source / "classify-val" / "metrics.json",
                       "bench_detect.json": source / "bench-detect" / "bench_detect.json",
                       "bench_audit.json": source / "bench-audit" / "bench_audit.json",
                       "bench_cascade.json": source / "bench-cascade" / "bench_cascade.json"}.items():
        if path.is_file():
            shutil.copyfile(path, out / name)
    if compare_md and compare_md.is_file() and (compare_dir / "compare_classifiers.json").is_file():
        shutil.copyfile(compare_dir / "compare_classifiers.json", out / "compare_classifiers.json")
    for report, copy in recipes.items():
        if report.is_file() and report.resolve() != copy.resolve():
            shutil.copyfile(report, copy)
    if heldout:
        shutil.copyfile(resolve_path(args.heldout) / "metrics.json", out / "eval_heldout.json")
    if args.model_card != "none":
        update_model_card(resolve_path(args.model_card), evaluations, detect_val, classify_val)
    print(f"report written to {out / 'REPORT.md'}")
    return 0


def bench_cascade_lines(report: dict) -> list[str]:
    from bench_cascade import render  # a sibling script: benchmarks/ is on the path when this one runs

    return render(report).split("\n")[2:]


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
