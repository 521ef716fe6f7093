"""Serve the App for a review dataset, and take pictures of it in headless Chromium."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

import numpy as np

from curation.app_config import FIELD_COLOURS
from curation.browser import BrowserError, HeadlessPage

DEFAULT_VIEW = "at-operating-point"  # what `app` opens when no --view is given (once evaluate saved it)
# The App opens an "Explore Enterprise" pop-up on first visit unless its own "seen" flag is set.
DISMISS_POPUP = "window.localStorage.setItem('fiftyone-enterprise-tooltip-seen', 'true');"
LOOKERS = "document.querySelectorAll('[data-cy=\"looker\"]').length"
GRID_BOX = """(() => {
  const boxes = [...document.querySelectorAll('[data-cy="looker"]')].map((e) => e.getBoundingClientRect());
  if (!boxes.length) return null;
  return [Math.min(...boxes.map((b) => b.left)), Math.min(...boxes.map((b) => b.top)),
          Math.max(...boxes.map((b) => b.right)), Math.max(...boxes.map((b) => b.bottom))];
})()"""  # the thumbnails' area: colours counted there come from drawn boxes, not the sidebar's swatches


class UnknownView(ValueError):
    """A saved view name the dataset does not have (the message lists those it has)."""


def saved_view(dataset, name: str | None):
    """The saved view ``name`` (None: the default view if saved, else the whole dataset)."""
    if name is None:
        return dataset.load_saved_view(DEFAULT_VIEW) if dataset.has_saved_view(DEFAULT_VIEW) else None
    if not dataset.has_saved_view(name):
        known = ", ".join(dataset.list_saved_views()) or "none yet: run `python tools/review.py evaluate`"
        raise UnknownView(f"dataset '{dataset.name}' has no saved view '{name}' (saved views: {known})")
    return dataset.load_saved_view(name)


def app_url(address: str, port: int, dataset_name: str, view_name: str | None = None) -> str:
    url = f"http://{address}:{port}/datasets/{dataset_name}"
    return f"{url}?view={view_name}" if view_name else url


def launch(dataset, view, port: int, address: str):
    """Start the App server for ``dataset`` (showing ``view``); returns fiftyone's session."""
    import fiftyone as fo

    return fo.launch_app(dataset, view=view, remote=True, address=address, port=port, auto=False)


def serve(dataset, view, port: int, address: str) -> int:
    """Serve the App until Ctrl-C or SIGTERM; returns the exit code."""
    session = launch(dataset, view, port, address)
    print(f"App serving '{dataset.name}' at http://{address}:{port} (stop with Ctrl-C or SIGTERM)", flush=True)

    def stop(signum, frame):
        session.close()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    session.wait(-1)
    return 0


def wait_until_serving(address: str, port: int, timeout: float = 120.0, alive=lambda: True) -> None:
    """Return once the App answers HTTP 200; raise BrowserError after ``timeout`` or when ``alive()`` fails."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline or not alive():
            raise BrowserError(f"the App at http://{address}:{port} did not start")
        time.sleep(1)


def colour_pixels(image_bgr: np.ndarray, colour: str, tolerance: int = 25) -> int:
    """How many pixels of a screenshot lie within ``tolerance`` (per channel) of ``colour`` (``#rrggbb``)."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    bgr = rgb[::-1]
    return int((np.abs(image_bgr.astype(np.int16) - bgr).max(axis=2) <= tolerance).sum())


def field_colours_drawn(image_bgr: np.ndarray, min_pixels: int = 30) -> dict[str, int]:
    """Pixels of each field's colour in a picture (the fields whose count reaches ``min_pixels``)."""
    found = {field: colour_pixels(image_bgr, colour) for field, colour in FIELD_COLOURS.items()}
    return {field: n for field, n in found.items() if n >= min_pixels}


def capture(url: str, out: str | Path, needs_fields: tuple[str, ...] = (), timeout: float = 180.0,
            settle: float = 2.0, size: tuple[int, int] = (1400, 900)) -> dict:
    """Open ``url`` with the pop-up dismissed, wait until the grid is drawn, save a screenshot at ``out``.

    The grid counts as drawn when it has thumbnails, their number has stopped changing, and the picture
    shows the colour of every field in ``needs_fields`` (or of any field when empty). Returns the
    number of thumbnails, the page's text and the field colours drawn; raises BrowserError on timeout.
    """
    import cv2

    out = Path(out)
    deadline = time.time() + timeout
    with HeadlessPage(*size, timeout=timeout) as page:
        page.before_every_page(DISMISS_POPUP)
        page.open(url)
        lookers = page.wait_for(LOOKERS, timeout=timeout, what="the App's sample grid")
        while True:
            time.sleep(settle)
            now = page.evaluate(LOOKERS) or 0
            page.screenshot(out)
            drawn = field_colours_drawn(_crop(cv2.imread(str(out)), page.evaluate(GRID_BOX)))
            complete = all(f in drawn for f in needs_fields) if needs_fields else bool(drawn)
            if now == lookers and complete:
                break
            if time.time() > deadline:
                raise BrowserError(f"{url}: the App drew {now} thumbnails with colours of {sorted(drawn) or 'no field'} "
                                   f"within {timeout:.0f} s")
            lookers = now
        return {"lookers": lookers, "text": page.evaluate("document.body.innerText"), "colours": drawn, "path": out,
                "grid_box": page.evaluate(GRID_BOX)}


def stack_pictures(shots: list[dict], out: str | Path, margin: int = 12) -> Path:
    """One picture of several ``capture`` results, one above the other, each cut below its last thumbnail."""
    import cv2

    from mri.files import write_atomic

    parts = []
    for shot in shots:
        image = cv2.imread(str(shot["path"]))
        bottom = int(shot["grid_box"][3]) + margin if shot.get("grid_box") else image.shape[0]
        parts.append(image[: min(bottom, image.shape[0])])
    width = max(p.shape[1] for p in parts)
    gap = np.full((6, width, 3), 255, np.uint8)
    rows = []
    for part in parts:
        rows += [np.pad(part, ((0, 0), (0, width - part.shape[1]), (0, 0))), gap]
    _, encoded = cv2.imencode(".png", np.concatenate(rows[:-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return write_atomic(out, encoded.tobytes())


def _crop(image: np.ndarray, box) -> np.ndarray:
    if not box:
        return image[:0, :0]
    x1, y1, x2, y2 = (max(0, int(round(v))) for v in box)
    return image[y1:y2, x1:x2]
