"""Weight averaging for the detector: one checkpoint whose weights are the mean of several epochs' weights
(stochastic weight averaging over the end of a schedule, ``detect.train --save-period 1``).

Why it is not already there: ultralytics keeps an exponential moving average of the weights, but its decay
ramps up as ``0.9999 * (1 - exp(-updates / 2000))`` and each new schedule counts updates from zero. A schedule
of 20-30 epochs on this project's data makes 40-60 updates an epoch, so at its end the decay is 0.3-0.6: the
"average" spans the last two or three batches. Averaging the last few epochs is the averaging such short
schedules never get.

BatchNorm statistics are averaged like the weights, without a recalibration pass: the epochs averaged are
neighbours late in a decaying schedule, where the statistics barely move. Only one run's checkpoints are
averaged (same run name, architecture, classes and input), each once. The result is a final checkpoint (no
optimizer state: it cannot be resumed, only fine-tuned from) that keeps the last epoch's training arguments
and input standardisation, and lists the files it was averaged from.
"""

from __future__ import annotations

import copy
import io
import re
from datetime import datetime
from pathlib import Path

from detect.model import INPUT_KEY, checkpoint_state
from mri.files import write_atomic

AVERAGED_KEY = "mri_averaged_from"  # checkpoint key: the files whose weights were averaged
AVERAGED_MARK = "~avg"  # ARM~avgK: a recipe comparison's row for an arm's last K epochs averaged
_EPOCH_FILE = re.compile(r"epoch(\d+)\.pt")  # ultralytics' name for --save-period checkpoints


def epoch_checkpoints(run: str | Path) -> list[tuple[int, Path]]:
    """A training run's per-epoch checkpoints (weights/epochN.pt) as (N, path), oldest first."""
    found = [(int(match.group(1)), path) for path in (Path(run) / "weights").glob("epoch*.pt")
             if (match := _EPOCH_FILE.fullmatch(path.name))]
    return sorted(found)


def last_epochs(run: str | Path, last: int) -> list[Path]:
    """The run's last ``last`` epoch checkpoints; ValueError in one line when there are not that many, evenly
    spaced (a gap means an epoch's file is missing, e.g. a run killed between saving last.pt and epochN.pt)."""
    run = Path(run)
    if last < 1:
        raise ValueError(f"{run}: --last {last}: average at least one epoch")
    epochs = epoch_checkpoints(run)
    if len(epochs) < last:
        raise ValueError(f"{run}: {len(epochs)} per-epoch checkpoints (weights/epochN.pt), {last} asked for "
                         "(train with --save-period 1 to keep them)")
    chosen = epochs[-last:]
    steps = {later - earlier for (earlier, _), (later, _) in zip(chosen, chosen[1:])}
    if len(steps) > 1:
        raise ValueError(f"{run}: epochs {', '.join(str(n) for n, _ in chosen)} are not evenly spaced; "
                         "an epoch's checkpoint is missing")
    return [path for _, path in chosen]


def default_output(run: str | Path, last: int) -> Path:
    return Path(run) / "weights" / f"average-last{last}.pt"


def average_checkpoints(paths: list[str | Path]) -> dict:
    """The checkpoint dict of the mean of ``paths``' weights; ValueError naming the file that does not fit."""
    if not paths:
        raise ValueError("no checkpoints to average")
    seen = set()
    for path in paths:
        if Path(path).resolve() in seen:
            raise ValueError(f"{path}: given twice; each checkpoint is averaged once")
        seen.add(Path(path).resolve())
    states = [_read(path) for path in paths]
    models = [_weights_of(state, path) for state, path in zip(states, paths)]
    first, reference = paths[0], models[0].state_dict()
    total = {name: tensor.double() for name, tensor in reference.items() if tensor.is_floating_point()}
    for path, state, model in zip(paths[1:], states[1:], models[1:]):
        _check_same_run(path, state, model, first, states[0], models[0])
        weights = model.state_dict()
        for name in total:
            total[name] += weights[name].double()

    averaged = copy.deepcopy(models[-1]).float()  # integer buffers (BatchNorm's batch count) from the last epoch
    averaged.load_state_dict({name: (total[name] / len(models)) if name in total else tensor
                              for name, tensor in models[-1].state_dict().items()})
    averaged.half().requires_grad_(False)
    checkpoint = {key: value for key, value in states[-1].items() if key not in ("train_metrics", "train_results")}
    checkpoint.update({"model": averaged, "ema": None, "optimizer": None, "scaler": None, "updates": None,
                       "best_fitness": None, "stopper": None, "epoch": -1, "date": datetime.now().astimezone().isoformat(),
                       AVERAGED_KEY: [str(path) for path in paths]})
    return checkpoint


def save_average(paths: list[str | Path], out: str | Path) -> Path:
    """Write the average of ``paths`` to ``out`` (atomically; never over an existing file, also one that appears
    while averaging)."""
    import torch

    out = Path(out)
    taken = FileExistsError(f"{out}: already exists; choose another --out (nothing was overwritten)")
    if out.exists():
        raise taken
    buffer = io.BytesIO()
    torch.save(average_checkpoints(paths), buffer)
    out.parent.mkdir(parents=True, exist_ok=True)  # its own errors, not "already exists" below
    try:
        return write_atomic(out, buffer.getvalue(), overwrite=False)
    except FileExistsError:
        raise taken from None


def _check_same_run(path, state: dict, model, first, first_state: dict, first_model) -> None:
    if state.get(INPUT_KEY) != first_state.get(INPUT_KEY):
        raise ValueError(f"{path}: trained on {state.get(INPUT_KEY) or 'raw'} input, {first} on "
                         f"{first_state.get(INPUT_KEY) or 'raw'} input; only one run's checkpoints can be averaged")
    run, first_run = (s.get("train_args", {}).get("name") for s in (state, first_state))
    if run != first_run:
        raise ValueError(f"{path}: from run '{run}', {first} from run '{first_run}'; only one run's checkpoints "
                         "can be averaged")
    weights, reference = model.state_dict(), first_model.state_dict()
    same_shapes = weights.keys() == reference.keys() and all(weights[k].shape == reference[k].shape for k in reference)
    if not same_shapes or getattr(model, "names", None) != getattr(first_model, "names", None):
        raise ValueError(f"{path}: not the same architecture or classes as {first}; only one run's checkpoints "
                         "can be averaged")


def _read(path: str | Path) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint file (give one run folder, or checkpoint files)")
    try:
        state = checkpoint_state(path)
    except Exception as error:  # torch and ultralytics raise many types for a file that is not a checkpoint
        raise ValueError(f"{path}: not a readable ultralytics checkpoint ({error.__class__.__name__})") from None
    state.pop("optimizer", None)  # the largest part of a training checkpoint, and not needed here
    return state


def _weights_of(state: dict, path: str | Path):
    model = state.get("ema") or state.get("model")
    if model is None or not hasattr(model, "state_dict"):
        raise ValueError(f"{path}: holds no detector weights (not an ultralytics checkpoint)")
    return model.float()
