"""Run by test_classify under torchrun: one epoch of classify.train, then each rank reports its weights."""

import json
import os
import sys
from pathlib import Path

registry, out = sys.argv[1], Path(sys.argv[2])
os.environ["MRI_RUNS_DIR"] = str(out / "runs")

import mri.offline  # noqa: E402,F401
from classify import engine, train  # noqa: E402

steps = {"count": 0}
original = engine.train_one_epoch


def counting_epoch(network, loader, *args, **kwargs):
    steps["count"] += len(loader)
    figures = original(network, loader, *args, **kwargs)
    model = network.module if hasattr(network, "module") else network
    checksum = [round(float(p.detach().double().sum()), 6) for p in model.parameters()]
    rank = int(os.environ["RANK"])
    (out / f"rank{rank}.json").write_text(json.dumps({"steps": steps["count"], "checksum": checksum}))
    return figures


engine.train_one_epoch = counting_epoch
args = train.get_args_parser().parse_args(["--registry", registry, "--arch", "baseline", "--epochs", "1",
                                            "--input-size", "32", "--batch", "4", "--project", str(out / "runs" / "classify")])
sys.exit(train.main(args))
