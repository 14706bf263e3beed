"""The demo's chat in a real browser: headless Chromium, two pages, one room.

The demo runs as a user runs it (``python -m flowcoro demo --port 0``, in a
subprocess).  Chromium is driven through the Chrome DevTools Protocol over
its own WebSocket, with FlowCoro's client (``flowcoro.websocket.connect``)
on FlowCoro's loop: no selenium, no playwright.  Page A opens the index,
follows its "Chat" link, joins room "r1" as ann; page B opens /chat and
joins as bob; each types a message into the page's form and the other page
shows it; closing page B shows "bob left" on page A.  So the browser's own
WebSocket client talks to HttpServer's upgrade, WebSocketServer and
ChatRoom, and the page's JavaScript is exercised as written.

Skips when Chromium is not installed (Debian: ``apt-get install chromium``;
``$CHROMIUM`` names another binary).
"""
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flowcoro
from flowcoro.websocket import connect

ROOT = Path(__file__).resolve().parent.parent
PKG_PARENT = str(Path(flowcoro.__file__).resolve().parent.parent)
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
#: The machine notes' flags: no sandbox (root in a container), no GPU, no
#: network chatter of the browser's own; a fresh profile per run.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-dev-shm-usage",          # containers often have a 64 MiB /dev/shm
    "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
]
STEP_TIMEOUT = 15.0

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed "
                       "(apt-get install chromium, or set CHROMIUM=/path/to/chromium)"),
]


# CDP errors that mean "the page is between documents", not a failure.
_NAVIGATING = ("Inspected target navigated or closed", "Execution context was destroyed",
               "Cannot find context with specified id")


class Cdp:
    """A minimal Chrome DevTools Protocol client over one WebSocket.

    ``call()`` sends a command (to the browser, or to a page with its
    flattened ``session``) and returns its result; events are ignored.
    """

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.pending = {}
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url):
        """Connect to the browser's DevTools WebSocket."""
        ws = await connect(url, max_size=64 << 20, ping_interval=None, compression=None)
        return cls(ws)

    async def _read(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                fut = self.pending.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("DevTools connection closed"))

    async def call(self, method, params=None, session=None):
        """Run one CDP command; raises RuntimeError with its error."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send(json.dumps(msg))
        reply = await asyncio.wait_for(fut, STEP_TIMEOUT)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def evaluate(self, session, expression):
        """The value of a JavaScript expression in a page."""
        result = await self.call("Runtime.evaluate", {"expression": expression,
                                                      "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def until(self, session, expression, what):
        """Poll ``expression`` in a page until it is truthy; returns its value."""
        deadline = asyncio.get_running_loop().time() + STEP_TIMEOUT
        while True:
            try:
                value = await self.evaluate(session, expression)
            except RuntimeError as exc:
                # A page that is navigating (a clicked link) answers an evaluate
                # sent in between with one of these; the next poll sees the new page.
                if not any(m in str(exc) for m in _NAVIGATING):
                    raise
                value = None
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                log = await self.evaluate(session, "document.getElementById('log') ? "
                                          "document.getElementById('log').innerText : document.URL")
                raise AssertionError(f"timed out waiting for {what}; the page shows: {log!r}")
            await asyncio.sleep(0.05)

    async def close(self):
        """Close the DevTools connection."""
        self.reader.cancel()
        await self.ws.close()


def _start_demo():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.Popen([sys.executable, "-m", "flowcoro", "demo", "--port", "0"], cwd=ROOT,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:            # the banner is the first line
        lines.append(line)
        m = re.search(r"listening on (http://[\d.]+:\d+)/", line)
        if m:
            return proc, m.group(1)
        if len(lines) > 20:
            break
    proc.kill()
    pytest.fail("the demo did not start:\n" + "".join(lines) + proc.communicate()[0])


def _stop_demo(proc):
    proc.send_signal(signal.SIGINT)     # graceful: the chat sockets get 1001
    try:
        return proc.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:   # pragma: no cover - a hung shutdown
        proc.kill()
        return proc.communicate()[0]


def _start_chromium(profile):
    log = open(profile.parent / "chromium.log", "w")
    # Not under the test run's LD_PRELOAD (make asan-test preloads libasan).
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    proc = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             "about:blank"], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, env=env)
    log.close()
    # With --remote-debugging-port=0 Chromium writes the port it chose and
    # the browser target's path to DevToolsActivePort in the profile.
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if active.exists():
            lines = active.read_text().split()
            if len(lines) == 2:
                return proc, f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.1)
    _stop_chromium(proc)
    pytest.fail("Chromium did not start; its output:\n"
                + (profile.parent / "chromium.log").read_text()[-3000:])


def _stop_chromium(proc):
    # Its own process group (start_new_session): the renderers and the
    # zygote go with it.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:       # pragma: no cover
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # The browser process exits first; wait for the rest of its group
    # (renderers, zygote) so that nothing outlives the test.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:                                    # pragma: no cover
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:              # pragma: no cover
        pass


def _js(s):
    return json.dumps(s)


async def _open_page(cdp, url):
    target = (await cdp.call("Target.createTarget", {"url": "about:blank"}))["targetId"]
    session = (await cdp.call("Target.attachToTarget",
                              {"targetId": target, "flatten": True}))["sessionId"]
    await cdp.call("Page.enable", session=session)
    await cdp.call("Page.navigate", {"url": url}, session)
    return target, session


async def _join(cdp, session, name, room):
    await cdp.until(session, "document.readyState === 'complete' && "
                    "!!document.getElementById('join')", "the chat page")
    await cdp.evaluate(session, f"""
        document.getElementById('name').value = {_js(name)};
        document.getElementById('room').value = {_js(room)};
        document.getElementById('join').click(); true""")
    await cdp.until(session, f"document.getElementById('status').textContent === "
                    f"{_js('in room ' + room)}", f"{name} in room {room}")


async def _say(cdp, session, text):
    await cdp.evaluate(session, f"""
        document.getElementById('text').value = {_js(text)};
        document.getElementById('send').click(); true""")


def _log_has(text):
    return (f"Array.from(document.querySelectorAll('#log li'))"
            f".some(li => li.textContent === {_js(text)})")


async def _chat(devtools, base):
    cdp = await Cdp.open(devtools)
    try:
        # Page A: the index page, then its link to the chat.
        target_a, a = await _open_page(cdp, base + "/")
        await cdp.until(a, "!!document.getElementById('chat-link')", "the index page")
        await cdp.evaluate(a, "document.getElementById('chat-link').click(); true")
        await cdp.until(a, "location.pathname === '/chat'", "the link to /chat")
        await _join(cdp, a, "ann", "r1")
        assert await cdp.evaluate(a, _log_has("ann joined r1"))

        target_b, b = await _open_page(cdp, base + "/chat")
        await _join(cdp, b, "bob", "r1")
        assert await cdp.evaluate(b, _log_has("bob joined r1; also here: ann"))
        await cdp.until(a, _log_has("bob joined r1; also here: ann"), "bob's join on page A")

        await _say(cdp, a, "hello from ann <b>not bold</b>")
        await cdp.until(b, _log_has("ann:hello from ann <b>not bold</b>"), "ann's message on B")
        await _say(cdp, b, "hi ann, é€𝄞")
        await cdp.until(a, _log_has("bob:hi ann, é€𝄞"), "bob's message on A")
        # Each page shows its own message too (the server sends it back).
        await cdp.until(a, _log_has("ann:hello from ann <b>not bold</b>"), "ann's own message")
        # The text was shown as text: the page made no <b> element of it.
        assert await cdp.evaluate(b, "document.querySelectorAll('#log li b').length") == 2

        # Another room does not see room r1's messages.
        target_c, c = await _open_page(cdp, base + "/chat")
        await _join(cdp, c, "cy", "r2")
        await _say(cdp, a, "only for r1")
        await cdp.until(b, _log_has("ann:only for r1"), "the r1 message on B")
        await _say(cdp, c, "r2 here")
        await cdp.until(c, _log_has("cy:r2 here"), "cy's own message")
        c_log = await cdp.evaluate(c, "document.getElementById('log').innerText")
        a_log = await cdp.evaluate(a, "document.getElementById('log').innerText")
        assert "only for r1" not in c_log and "r2 here" not in a_log

        # Closing page B's tab closes its WebSocket: page A is told.
        await cdp.call("Target.closeTarget", {"targetId": target_b})
        await cdp.until(a, _log_has("bob left"), "bob's leave notice on A")
        for target in (target_a, target_c):
            await cdp.call("Target.closeTarget", {"targetId": target})
    finally:
        await cdp.close()


def test_two_browser_pages_chat_through_the_demo(tmp_path):
    demo, base = _start_demo()
    try:
        browser, devtools = _start_chromium(tmp_path / "profile")
        try:
            flowcoro.run(asyncio.wait_for(_chat(devtools, base), 45))
        finally:
            _stop_chromium(browser)
    finally:
        out = _stop_demo(demo)
    assert "GET /chat 200" in out and "GET / 200" in out
    assert "Traceback" not in out, out
