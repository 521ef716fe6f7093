"""Drive headless Chromium through the DevTools protocol: open a page, wait for it, run a script, take a picture.

Used to take the README's screenshot of the App and by the browser test. Only the standard library: a
minimal WebSocket client speaks the protocol, so nothing beyond Debian's ``chromium`` is needed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = [  # no first-run work, no network besides the page asked for
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--disable-quic", "--disable-default-apps", "--mute-audio",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or a page did not reach the state asked for in time."""


def find_chromium() -> str | None:
    """Path of a Chromium or Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol: masked text frames out, text frames in."""

    def __init__(self, url: str, timeout: float):
        match = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        host, port, path = match.group(1), int(match.group(2)), match.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise BrowserError("Chromium closed the DevTools connection during the handshake")
            response += chunk
        if b" 101 " not in response.split(b"\r\n")[0]:
            raise BrowserError(f"Chromium refused the DevTools connection: {response.splitlines()[0]!r}")
        self.buffer = response.split(b"\r\n\r\n", 1)[1]

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(payload))
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError as error:  # a timeout included
                raise BrowserError(f"no answer from Chromium ({error})") from None
            if not chunk:
                raise BrowserError("Chromium closed the DevTools connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(length)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise BrowserError("Chromium closed the DevTools connection")
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if first & 0x80:
                    return message.decode()

    def close(self) -> None:
        self.sock.close()


class HeadlessPage:
    """One Chromium tab, driven synchronously. Use as a context manager; Chromium is stopped on exit."""

    def __init__(self, width: int = 1400, height: int = 900, timeout: float = 60.0, browser: str | None = None):
        self.browser = browser or find_chromium()
        if self.browser is None:
            raise BrowserError("no Chromium found: install Debian's `chromium` (apt-get install chromium)")
        self.width, self.height, self.timeout = width, height, timeout
        self.profile = tempfile.mkdtemp(prefix="mri-chromium-")
        self.process = None
        self.log = None
        self.ws = None
        self.next_id = 0

    def __enter__(self) -> "HeadlessPage":
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        self.log = open(Path(self.profile) / "chromium.log", "w")  # a file: a pipe nobody reads would fill and stall it
        self.process = subprocess.Popen([self.browser, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                                         f"--window-size={self.width},{self.height}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=self.log)
        port = self._devtools_port()
        deadline = time.time() + self.timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                    pages = [t for t in json.load(response) if t.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise BrowserError("Chromium opened no page")
            time.sleep(0.3)
        self.ws = _WebSocket(pages[0]["webSocketDebuggerUrl"], self.timeout)
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  width=self.width, height=self.height, deviceScaleFactor=1, mobile=False)

    def _devtools_port(self) -> int:
        deadline = time.time() + self.timeout
        port_file = Path(self.profile) / "DevToolsActivePort"
        while time.time() < deadline:
            if port_file.is_file() and port_file.read_text().strip():
                return int(port_file.read_text().split()[0])
            if self.process.poll() is not None:
                log = (Path(self.profile) / "chromium.log").read_text(errors="replace")
                raise BrowserError(f"Chromium exited at start: {log[-300:].strip()}")
            time.sleep(0.2)
        raise BrowserError("Chromium did not open its DevTools port in time")

    def __exit__(self, *exc) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and return its result (events that arrive meanwhile are dropped)."""
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})

    def before_every_page(self, script: str) -> None:
        """Run ``script`` in every page this tab opens, before the page's own scripts."""
        self.call("Page.addScriptToEvaluateOnNewDocument", source=script)

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page (promises are awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed in the page: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float | None = None, what: str = "the page") -> object:
        """Poll ``expression`` until it is truthy; return its value, or raise BrowserError after ``timeout``."""
        deadline = time.time() + (timeout or self.timeout)
        while True:
            try:
                value = self.evaluate(expression)
            except BrowserError:
                value = None
            if value:
                return value
            if time.time() > deadline:
                raise BrowserError(f"{what} did not appear within {timeout or self.timeout:.0f} s")
            time.sleep(0.5)

    def screenshot(self, path: str | Path) -> Path:
        """Save the visible page as a PNG (written atomically)."""
        from mri.files import write_atomic

        data = self.call("Page.captureScreenshot", format="png")["data"]
        return write_atomic(path, base64.b64decode(data))
