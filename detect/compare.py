"""Equal-budget comparison of detector training recipes, scored on a source none of them trained on.

An arm is an augmentation preset (``detect/hyp/<name>.yaml``) at an image size, written ``preset`` or
``preset@imgsz``, optionally with its own model (``preset@imgsz+yolov5s``; otherwise the comparison's) and run
at another size than it trained at (``preset@416:256``: trained at 416 px, scored at 256 px, the inference cost
of a 256-px detector; it shares its training with ``preset@416`` when both are listed). Every
arm trains through ``python -m detect.train`` on the same data (all registry datasets but the held-out one,
and without any image the audit links to it), with the same epochs, seed, batch and fraction, and validates
only after the last epoch, so ``last.pt`` is the arm's result. Each is then scored on (a) the leakage-free
test splits of the sources it trained on and (b) every image of the held-out source, with the same metrics as
``detect.val``. With ``average_last`` K, each arm also keeps its epochs' weights and is scored a second time
as ``ARM~avgK``: its last K epochs averaged (``detect.average``), the same training budget.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mri.files import write_json
from mri.reporting import fmt, machine

FINISHED = "finished.json"


@dataclass(frozen=True)
class Arm:
    preset: str
    imgsz: int  # training size
    model: str | None = None  # None: the comparison's --model
    run_imgsz: int | None = None  # None: scored at its training size

    @property
    def name(self) -> str:
        return (f"{self.preset}@{self.imgsz}" + (f":{self.run_imgsz}" if self.run_imgsz else "")
                + (f"+{self.model}" if self.model else ""))

    @property
    def training(self) -> "Arm":
        """The arm as trained: the same arm whatever size it is scored at."""
        return Arm(self.preset, self.imgsz, self.model)

    @property
    def scoring_imgsz(self) -> int:
        return self.run_imgsz or self.imgsz

    @classmethod
    def parse(cls, spec: str, default_imgsz: int) -> "Arm":
        recipe, plus, model = spec.partition("+")
        preset, at, sizes = recipe.partition("@")
        size, colon, run_size = sizes.partition(":")
        # the name becomes a folder name, so a model is a plain name (yolov5s, yolov5s.yaml), not a path
        bad_model = plus and not re.fullmatch(r"[A-Za-z0-9_-]+(\.yaml)?", model)
        bad_size = (at and not size.isdigit()) or (colon and not run_size.isdigit())
        if not preset or bad_size or bad_model:
            raise ValueError(f"arm '{spec}': write it as PRESET, PRESET@IMGSZ, PRESET@IMGSZ:RUN_IMGSZ or "
                             "PRESET@IMGSZ+MODEL (e.g. boxsafe@320, standardised@416:256, standardised@256+yolov5s)")
        return cls(preset, int(size) if size else default_imgsz, model or None, int(run_size) if run_size else None)


def arm_folder(out: Path, arm: Arm) -> Path:
    return out / "arms" / arm.training.name


def train_command(arm: Arm, out: Path, settings: dict) -> list[str]:
    """The ``detect.train`` command line of one arm (an argument list: nothing goes through a shell)."""
    command = [sys.executable, "-m", "detect.train", "--hyp", arm.preset, "--imgsz", str(arm.imgsz),
               "--model", arm.model or settings["model"], "--epochs", str(settings["epochs"]),
               "--batch", str(settings["batch"]), "--fraction", str(settings["fraction"]), "--seed", str(settings["seed"]),
               "--device", str(settings["device"]), "--workers", str(settings["workers"]), "--no-val", "--no-plots",
               "--project", str(out / "arms"), "--name", arm_folder(out, arm).name]
    if settings.get("hold_out"):
        command += ["--hold-out", *settings["hold_out"]]
    if settings.get("registry"):
        command += ["--registry", str(settings["registry"])]
    if settings.get("average_last"):
        command += ["--save-period", "1"]
    return command


def averaged_name(arm: Arm, last: int) -> str:
    from detect.average import AVERAGED_MARK

    return f"{arm.name}{AVERAGED_MARK}{last}"


def averaged_weights(arm: Arm, out: Path, last: int) -> Path:
    """The arm's last ``last`` epochs averaged into one checkpoint (made once, beside its last.pt); RuntimeError
    in one line when they cannot be."""
    from detect.average import default_output, last_epochs, save_average

    folder = arm_folder(out, arm)
    averaged = default_output(folder, last)
    if not averaged.is_file():
        try:
            save_average(last_epochs(folder, last), averaged)
        except (ValueError, OSError) as error:
            raise RuntimeError(f"arm {arm.name}: {error}") from None
    return averaged


def train_arm(arm: Arm, out: Path, settings: dict) -> dict:
    """Train one arm unless an earlier call finished it; resume it if it was interrupted."""
    folder = arm_folder(out, arm)
    done = folder / FINISHED
    last = folder / "weights" / "last.pt"
    if done.is_file():  # the arm and weights of this folder, wherever it is now (it may have been trained elsewhere)
        return {**json.loads(done.read_text()), "arm": arm.name, "weights": str(last)}
    command = ([sys.executable, "-m", "detect.train", "--resume", str(folder), "--device", str(settings["device"]),
                "--workers", str(settings["workers"])] if last.is_file() else train_command(arm, out, settings))
    log = out / "logs" / f"{arm.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "a") as handle:
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode
    if code != 0 or not last.is_file():
        raise RuntimeError(f"arm {arm.name}: training failed (exit {code}); see {log}")
    record = {"arm": arm.name, "weights": str(last), "train_seconds": round(time.perf_counter() - start, 1),
              "machine": machine(str(settings["device"]))}
    write_json(done, record)
    return record


def train_arms(arms: list[Arm], out: Path, settings: dict, jobs: int = 1) -> dict[str, dict]:
    """Train every arm, ``jobs`` at a time, once however many sizes it is scored at; returns arm name -> training
    record (``preset@416`` and ``preset@416:256`` share one)."""
    trainings = list(dict.fromkeys(arm.training for arm in arms))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        records = dict(zip(trainings, pool.map(lambda arm: train_arm(arm, out, settings), trainings)))
    return {arm.name: records[arm.training] for arm in arms}


def trained_on(records: dict[str, dict]) -> str:
    return "; ".join(sorted({r.get("machine", "unknown machine") for r in records.values()}))


def headline(metrics: dict) -> dict:
    """The three figures recipes are compared by, from a ``detect.evaluate`` metrics dict."""
    overall = metrics["overall"]
    return {"map50": overall["coco"]["map50"], "map50_95": overall["coco"]["map50_95"],
            "sens_at_1fp": overall["sens_at_fp"]["1"], "n_images": overall["n_images"]}


def score_arm(weights: str | Path, imgsz: int, test_sets: dict[str, list], device: str) -> dict:
    """Headline figures of one trained arm on each named list of ground-truth records."""
    from detect.evaluate import evaluate_detector
    from detect.model import load_detector

    model = load_detector(weights)
    return {name: headline(evaluate_detector(model, records, imgsz, 0.25, device)[0])
            for name, records in test_sets.items()}


def pick_winner(rows: list[dict], by: str = "held_out") -> str:
    """The arm with the best mAP50-95 on the held-out source (mAP50 breaks ties): choose by the unseen source.
    Recipes only: an averaged row (``ARM~avgK``) is the same recipe's weights taken another way, shown beside it."""
    from detect.average import AVERAGED_MARK

    scored = [r for r in rows if by in r["scores"] and AVERAGED_MARK not in r["arm"]]
    best = max(scored, key=lambda r: (r["scores"][by]["map50_95"], r["scores"][by]["map50"]))
    return best["arm"]


def _averaging(arm_name: str) -> str:
    """The ``~avgK`` suffix of an averaged row's name ('' for an arm's last.pt)."""
    from detect.average import AVERAGED_MARK

    return arm_name[arm_name.index(AVERAGED_MARK):] if AVERAGED_MARK in arm_name else ""


def render(report: dict) -> str:
    """The comparison as Markdown: one row per arm, its held-out figures also as differences from the first arm's
    (the plain default; an averaged row from the first arm's averaged row, which itself from the first's last.pt)."""
    s = report["settings"]
    held = ", ".join(s.get("hold_out") or []) or "none"
    lines = [
        "# Detector recipes at equal budget",
        "",
        f"{report['date']}: trained on {report.get('trained_on', report['machine'])}, scored on {report['machine']}. "
        f"Every arm: {s['model']} (unless its name adds `+MODEL`), {s['epochs']} epochs, batch {s['batch']}, "
        f"seed {s['seed']}, fraction {s['fraction']} of the training images, trained on the registry without "
        f"`{held}` (and without every image the audit links to it), `last.pt` scored"
        + (f"; `ARM~avg{s['average_last']}`: the same arm's last {s['average_last']} epochs' weights averaged"
           if s.get("average_last") else "")
        + f". `in-distribution`: the leakage-free test splits of the training sources; `held-out`: every image of `{held}`. "
        "The difference column: held-out minus the first arm's (an averaged row minus the first arm's averaged row, "
        "which itself minus the first arm's `last.pt`).",
        "",
        "| arm | in-dist. mAP50 | in-dist. mAP50-95 | in-dist. sens@1FP | held-out mAP50 | held-out mAP50-95 | held-out sens@1FP "
        "| held-out minus first arm (mAP50 / mAP50-95) | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    held_out = {row["arm"]: row["scores"].get("held_out") for row in report["arms"]}
    first = report["arms"][0]["arm"]
    for row in report["arms"]:
        cells = []
        for key in ("in_distribution", "held_out"):
            figures = row["scores"].get(key)
            cells += [fmt(figures[m]) if figures else "n/a" for m in ("map50", "map50_95", "sens_at_1fp")]
        base_name = first + _averaging(row["arm"])  # an averaged row against the first arm's averaged row ...
        held, base = held_out[row["arm"]], held_out.get(first if base_name == row["arm"] else base_name)  # ... or last.pt
        cells.append(" / ".join(f"{held[m] - base[m]:+.3f}" for m in ("map50", "map50_95")) if held and base else "n/a")
        mark = " (chosen)" if row["arm"] == report.get("winner") else ""
        lines.append(f"| `{row['arm']}`{mark} | " + " | ".join(cells) + f" | {row['train_seconds']:.0f} |")
    lines += ["", f"Chosen by held-out mAP50-95 (mAP50 breaks ties): `{report.get('winner')}`.", ""]
    return "\n".join(lines)
