"""A real headless browser for the tests: Debian's chromium, driven over the Chrome DevTools Protocol.

``chromium_path()`` gives ``/usr/bin/chromium``, installing Debian's package
first when it is missing and this process may (root, apt-get on PATH): once,
under a file lock, so that concurrent pytest workers wait for one install
instead of racing apt. Elsewhere the browser tests are skipped, saying why.

``Page`` drives one tab over the DevTools websocket with aiohttp's client
(already a dependency): open a file, evaluate JavaScript, click, download,
take a screenshot. No WebDriver and no browser download of its own: only
the chromium that Debian ships.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import aiohttp
import pytest

CHROMIUM = Path("/usr/bin/chromium")
_LOCK = Path(tempfile.gettempdir()) / "irt-calibration-chromium-install.lock"


def chromium_path() -> Path:
    """Debian's chromium, installed now if missing and possible; else the calling test is skipped."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and this process cannot install it (needs root and apt-get): "
                    "apt-get install chromium")
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be installing it: wait for it
        if not CHROMIUM.exists():
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            steps = (["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"])
            for step in steps:
                done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    pytest.skip(f"could not install chromium ({' '.join(step)} exited {done.returncode}): "
                                f"{done.stderr.strip()[-300:]}")
    return CHROMIUM


def chromium_command(*arguments: str) -> list[str]:
    """A headless chromium command line that needs no display, sandbox or GPU (root in a container)."""
    return [str(chromium_path()), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--hide-scrollbars", *arguments]


class Page:
    """One tab of a headless chromium, driven over the DevTools Protocol (use ``async with Page.open(...)``)."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse, downloads: Path) -> None:
        self._socket = socket
        self._session = ""  # the tab's DevTools session, once attached
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: asyncio.Queue = asyncio.Queue()
        self.downloads = downloads
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, path: Path, width: int = 1280, height: int = 900, javascript: bool = True):
        """Start chromium, open ``path`` in a tab (scripts off unless ``javascript``) and wait until it has loaded."""
        with tempfile.TemporaryDirectory(prefix="review-chromium-") as scratch:
            process = await asyncio.create_subprocess_exec(
                *chromium_command("--remote-debugging-port=0", f"--user-data-dir={scratch}/profile",
                                  f"--window-size={width},{height}", "about:blank"),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            try:
                endpoint = await asyncio.wait_for(_devtools_endpoint(process), 60)
                async with aiohttp.ClientSession() as http, http.ws_connect(endpoint, max_msg_size=0) as socket:
                    page = cls(socket, Path(scratch) / "downloads")
                    page.downloads.mkdir()
                    target = await page.send("Target.createTarget", session=False, url="about:blank")
                    attached = await page.send("Target.attachToTarget", session=False,
                                               targetId=target["targetId"], flatten=True)
                    page._session = attached["sessionId"]
                    await page.send("Page.enable")
                    await page.send("Browser.setDownloadBehavior", behavior="allow",
                                    downloadPath=str(page.downloads), eventsEnabled=True, session=False)
                    await page.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                                    deviceScaleFactor=1, mobile=False)
                    if not javascript:
                        await page.send("Emulation.setScriptExecutionDisabled", value=True)
                    await page.send("Page.navigate", url=path.resolve().as_uri())
                    await page.wait_for_event("Page.loadEventFired")
                    try:
                        yield page
                    finally:
                        page._reader.cancel()
            finally:
                if process.returncode is None:
                    process.kill()
                await process.wait()

    async def _read(self) -> None:
        async for message in self._socket:
            data = json.loads(message.data)
            future = self._pending.pop(data.get("id"), None)
            if future is not None and not future.done():
                if "error" in data:
                    future.set_exception(RuntimeError(f"DevTools: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            elif "method" in data:
                self._events.put_nowait(data)

    async def send(self, method: str, session: bool = True, **params):
        """Call one DevTools method (on this tab, unless ``session`` is false) and return its result."""
        message_id = next(self._ids)
        message = {"id": message_id, "method": method, "params": params}
        if session and self._session:
            message["sessionId"] = self._session
        future = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self._socket.send_str(json.dumps(message))
        return await asyncio.wait_for(future, 60)

    async def wait_for_event(self, method: str, timeout: float = 60, **matching) -> dict:
        """The next event named ``method`` whose parameters include ``matching``."""
        async def wait():
            while True:
                event = await self._events.get()
                params = event.get("params", {})
                if event["method"] == method and all(params.get(k) == v for k, v in matching.items()):
                    return params
        return await asyncio.wait_for(wait(), timeout)

    async def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def html(self) -> str:
        """The document as the browser holds it now (read through DevTools, so with scripts off too)."""
        root = await self.send("DOM.getDocument", depth=0)
        return (await self.send("DOM.getOuterHTML", nodeId=root["root"]["nodeId"]))["outerHTML"]

    async def screenshot(self, path: Path, full_page: bool = False, clip: dict | None = None) -> None:
        """A PNG of the viewport (or the whole page, or ``clip`` in CSS pixels)."""
        params: dict = {"format": "png"}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        if clip:
            params.update(captureBeyondViewport=True, clip={**clip, "scale": 1})
        shot = await self.send("Page.captureScreenshot", **params)
        path.write_bytes(base64.b64decode(shot["data"]))


async def _devtools_endpoint(process: asyncio.subprocess.Process) -> str:
    """The browser's websocket address, from the line chromium prints on stderr when it listens."""
    while True:
        line = await process.stderr.readline()
        if not line:
            raise RuntimeError(f"chromium exited ({await process.wait()}) before it listened for DevTools")
        found = re.search(rb"DevTools listening on (ws://\S+)", line)
        if found:
            asyncio.ensure_future(_drain(process.stderr))  # keep its stderr pipe from filling
            return found.group(1).decode()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass
