"""The built-in web UI: HTTP-level checks, then a real headless Chromium driven over the DevTools protocol.

The browser is Debian's ``chromium`` (``apt-get install -y chromium``; another binary can be named with
``AIBRIDGE_CHROMIUM``), driven over its DevTools websocket with aiohttp: no Selenium or Playwright and no
browser download. A missing browser is installed with apt-get when the tests run as root on Debian or
Ubuntu; otherwise it FAILS these tests with the instruction; they are never skipped.

Screenshots of the dashboard are written to ``/tmp/aibridge-ui*.png`` (``AIBRIDGE_UI_SCREENSHOTS`` moves them).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.e2e.conftest import Bridge
from tests.harness import Client, wait_for

SCREENSHOT_DIR = Path(os.environ.get("AIBRIDGE_UI_SCREENSHOTS", "/tmp"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
                  "--lang=en-US", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]
WINDOW = (1440, 960)
BROWSER_START_TIMEOUT = 30.0
WAIT_TIMEOUT = 15.0

XSS_PROMPT = "what does <img src=x onerror=alert(1)> render as? </td><script>alert(2)</script>"
SESSION_ID = "ui-session-7f3a"
ALICE = {   # model → prompt; the models pick the fake upstream's scenario
    "gpt-4.1-scenario-tool": XSS_PROMPT,
    "gpt-5-scenario-simple": "alice plans a refactor of the billing module",
    "claude-sonnet-4-5-scenario-tool": "alice asks claude to run the tests",
}
BOB = {
    "claude-haiku-4-5-scenario-cached": "bob's private question about the roadmap",
    "gpt-4.1-scenario-http_error": "bob hits a rate limit",
}
CAROL_REQUESTS = 53      # more than one page (50) of the interceptions table


# ---------------------------------------------------------------- traffic

@dataclass
class Traffic:
    bridge: Bridge
    alice: str
    bob: str
    carol: str
    owner: str


async def _generate(bridge: Bridge, carol: str) -> None:
    alice_openai = openai.AsyncOpenAI(base_url=bridge.openai_url, api_key=bridge.token, max_retries=0, timeout=30)
    bob_openai = openai.AsyncOpenAI(base_url=bridge.openai_url, api_key=bridge.other_token, max_retries=0, timeout=30)
    carol_openai = openai.AsyncOpenAI(base_url=bridge.openai_url, api_key=carol, max_retries=0, timeout=30)
    # Claude Code names its session in a header: that is what the Sessions tab groups by.
    alice_claude = anthropic.AsyncAnthropic(
        base_url=bridge.anthropic_url, api_key=bridge.token, max_retries=0, timeout=30,
        default_headers={"X-Claude-Code-Session-Id": SESSION_ID, "User-Agent": "claude-cli/2.1.0 (external, cli)"})
    bob_claude = anthropic.AsyncAnthropic(base_url=bridge.anthropic_url, api_key=bridge.other_token, max_retries=0,
                                          timeout=30)
    chat_model, responses_model, claude_model = ALICE
    await alice_openai.chat.completions.create(
        model=chat_model, messages=[{"role": "user", "content": ALICE[chat_model]}])
    async for _ in await alice_openai.responses.create(model=responses_model, input=ALICE[responses_model],
                                                       stream=True):
        pass
    # One human prompt, a tool call, and the tool result sent back: one thread of two actions.
    history: list[Any] = [{"role": "user", "content": ALICE[claude_model]}]
    asked = await alice_claude.messages.create(model=claude_model, max_tokens=512, messages=history)
    [use] = [block for block in asked.content if block.type == "tool_use"]
    history += [{"role": "assistant", "content": [block.model_dump() for block in asked.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "21C"}]}]
    await alice_claude.messages.create(model=claude_model, max_tokens=512, messages=history)
    cached_model, failing_model = BOB
    await bob_claude.messages.create(model=cached_model, max_tokens=512,
                                     messages=[{"role": "user", "content": BOB[cached_model]}])
    with pytest.raises(openai.RateLimitError):
        await bob_openai.chat.completions.create(model=failing_model,
                                                 messages=[{"role": "user", "content": BOB[failing_model]}])
    limit = asyncio.Semaphore(8)

    async def carol_asks(i: int) -> None:
        async with limit:
            await carol_openai.chat.completions.create(
                model="gpt-4.1-mini-scenario-simple", messages=[{"role": "user", "content": f"carol question {i}"}])

    await asyncio.gather(*(carol_asks(i) for i in range(CAROL_REQUESTS)))


@pytest.fixture(scope="module")
async def traffic(bridge: Bridge) -> Traffic:
    carol = bridge.server.create_user("carol")
    await _generate(bridge, carol)
    owner = bridge.owner()
    expected = len(ALICE) + 1 + len(BOB) + CAROL_REQUESTS

    async def all_recorded() -> bool:
        status, body = await owner.get("/api/v2/aibridge/interceptions?limit=1")
        assert status == 200, body
        return bool(body["count"] >= expected)

    assert await wait_for(all_recorded, timeout=20), "the interceptions were not all recorded"
    return Traffic(bridge, bridge.token, bridge.other_token, carol, bridge.server.admin_token)


# ---------------------------------------------------------------- HTTP level

async def raw_get(url: str, target: str) -> tuple[int, dict[str, str], bytes]:
    """GET with the request target sent byte for byte (HTTP clients normalise ``..`` away)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_root_redirects_to_ui(bridge: Bridge) -> None:
    for path in ("/", "/aibridge"):
        status, headers, _ = await raw_get(bridge.server.url, path)
        assert status == 302, path
        assert headers["location"] == "/aibridge/"
    async with aiohttp.ClientSession() as session, session.get(bridge.server.url + "/") as resp:
        assert resp.status == 200 and str(resp.url).endswith("/aibridge/")


async def test_page_is_served_with_security_headers(bridge: Bridge) -> None:
    async with aiohttp.ClientSession() as session, session.get(bridge.server.url + "/aibridge/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        csp = resp.headers["Content-Security-Policy"]
        html = await resp.text()
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"] and directives["object-src"] == ["'none'"]
    assert "require-trusted-types-for" in directives
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "<script src=\"app.js\"" in html and 'href="app.css"' in html
    # Offline machines: nothing may come from another host, and no inline code (the CSP forbids it).
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<script>" not in html and "style=" not in html and " on" + "click=" not in html


@pytest.mark.parametrize(("name", "content_type"), [
    ("app.js", "text/javascript; charset=utf-8"),
    ("app.css", "text/css; charset=utf-8"),
    ("favicon.svg", "image/svg+xml"),
    ("index.html", "text/html; charset=utf-8"),
])
async def test_assets_are_served_with_their_types(bridge: Bridge, name: str, content_type: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{bridge.server.url}/aibridge/{name}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == content_type
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Cache-Control"] == "no-cache"
            etag = resp.headers["ETag"]
            assert await resp.read()
        async with session.get(f"{bridge.server.url}/aibridge/{name}", headers={"If-None-Match": etag}) as again:
            assert again.status == 304


async def test_ui_needs_no_token_but_its_data_does(bridge: Bridge) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/aibridge/", "/aibridge/app.js"):
            async with session.get(bridge.server.url + path) as resp:
                assert resp.status == 200
        async with session.get(bridge.server.url + "/api/v2/aibridge/interceptions") as resp:
            assert resp.status == 401


@pytest.mark.parametrize("target", [
    "/aibridge/../pyproject.toml",
    "/aibridge/../../pyproject.toml",
    "/aibridge/..%2fpyproject.toml",
    "/aibridge/..%2F..%2Fpyproject.toml",
    "/aibridge/%2e%2e/pyproject.toml",
    "/aibridge/%2e%2e%2f%2e%2e%2fpyproject.toml",
    "/aibridge/..%5c..%5cpyproject.toml",
    "/aibridge/..\\..\\pyproject.toml",
    "/aibridge/../../../../../../etc/passwd",
    "/aibridge/%2fetc%2fpasswd",
    "/aibridge//etc/passwd",
    "/aibridge/ui.py",
    "/aibridge/__init__.py",
    "/aibridge/static/app.js",
    "/aibridge/..%2fui.py",
    "/aibridge/.%2e/server.py",
    "/aibridge/app.js%00.html",
    "/aibridge/nope.js",
])
async def test_static_paths_cannot_traverse(bridge: Bridge, target: str) -> None:
    status, _, body = await raw_get(bridge.server.url, target)
    assert status == 404, (target, status, body[:200])
    for secret in (b"[project]", b"root:", b"import ", b"aiohttp"):
        assert secret not in body, target


# ---------------------------------------------------------------- Chrome DevTools protocol

class CDPError(Exception):
    pass


class DevTools:
    """A minimal Chrome DevTools protocol client over aiohttp's websocket (flattened target sessions)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[tuple[str | None, str, dict[str, Any]]] = []     # (session id, method, params)
        self.reader = asyncio.create_task(self._read())
        self.tasks: set[asyncio.Task[Any]] = set()

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                future = self.pending.pop(data["id"], None)
                if future is None or future.done():
                    continue
                if "error" in data:
                    future.set_exception(CDPError(f"{data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            else:
                self.events.append((data.get("sessionId"), data["method"], data.get("params", {})))
                if data["method"] == "Page.javascriptDialogOpening":
                    # An alert() would block the page (and means an injection ran): dismiss it, the test fails.
                    task = asyncio.create_task(self.send("Page.handleJavaScriptDialog", {"accept": False},
                                                         data.get("sessionId")))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(CDPError("the browser closed the DevTools connection"))

    async def send(self, method: str, params: dict[str, Any] | None = None, session_id: str | None = None,
                   timeout: float = 30) -> dict[str, Any]:
        msg_id = next(self.ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = future
        await self.ws.send_str(json.dumps(message))
        return await asyncio.wait_for(future, timeout)

    async def new_page(self) -> Page:
        """A tab in a fresh browser context: its own sessionStorage, like a new incognito window."""
        context = (await self.send("Target.createBrowserContext"))["browserContextId"]
        target = (await self.send("Target.createTarget", {"url": "about:blank", "browserContextId": context}))
        session = (await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}))
        page = Page(self, session["sessionId"], context)
        for domain in ("Page", "Runtime", "Log", "Network"):
            await page.send(f"{domain}.enable")
        await page.send("Emulation.setDeviceMetricsOverride", {
            "width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})
        return page


@dataclass
class Page:
    devtools: DevTools
    session_id: str
    context_id: str
    log: list[str] = field(default_factory=list)

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.devtools.send(method, params, self.session_id)

    def events(self, method: str) -> list[dict[str, Any]]:
        return [p for s, m, p in self.devtools.events if s == self.session_id and m == method]

    async def close(self) -> None:
        await self.devtools.send("Target.disposeBrowserContext", {"browserContextId": self.context_id})

    async def js(self, expression: str) -> Any:
        """Evaluate in the page (promises awaited) and return the JSON value."""
        result = await self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait(self, expression: str, what: str, timeout: float = WAIT_TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                state = await self.js("document.body ? document.body.innerText.slice(0, 3000) : ''")
                raise AssertionError(f"timed out waiting for {what}\n--- page text ---\n{state}")
            await asyncio.sleep(0.05)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait(f"location.href === {json.dumps(url)} && document.readyState === 'complete'", f"load {url}")

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (it must be visible and on top)."""
        box = await self.wait(f"""(() => {{
            const node = document.querySelector({json.dumps(selector)});
            if (!node || node.closest('[hidden]')) return null;
            node.scrollIntoView({{block: 'center'}});
            const r = node.getBoundingClientRect();
            return r.width && r.height ? [r.left + r.width / 2, r.top + r.height / 2] : null;
        }})()""", f"{selector} to be visible")
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent",
                            {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    async def type(self, selector: str, text: str) -> None:
        await self.click(selector)
        await self.js(f"document.querySelector({json.dumps(selector)}).select()")
        await self.send("Input.insertText", {"text": text})

    async def text(self, selector: str) -> str:
        value = await self.js(f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''")
        return str(value)

    async def texts(self, selector: str) -> list[str]:
        value = await self.js(f"[...document.querySelectorAll({json.dumps(selector)})].map(n => n.textContent)")
        return [str(v) for v in value]

    async def screenshot(self, name: str) -> Path:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / name
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def problems(self) -> list[str]:
        """JavaScript exceptions, dialogs (an injection ran) and CSP or other console errors in this tab."""
        found = [f"exception: {e['exceptionDetails']}" for e in self.events("Runtime.exceptionThrown")]
        found += [f"dialog: {d.get('message')}" for d in self.events("Page.javascriptDialogOpening")]
        found += [f"console.error: {c['args']}" for c in self.events("Runtime.consoleAPICalled")
                  if c["type"] == "error"]
        for entry in (e["entry"] for e in self.events("Log.entryAdded")):
            # 401/403 answers are logged by the browser as network errors: those are the tests' own doing.
            if entry["level"] == "error" and entry.get("source") != "network":
                found.append(f"{entry.get('source')}: {entry['text']}")
        return found

    def requested(self) -> list[str]:
        return [r["request"]["url"] for r in self.events("Network.requestWillBeSent")]


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
APT_TIMEOUT = 900


def _which_chromium() -> str | None:
    for candidate in (os.environ.get("AIBRIDGE_CHROMIUM"), *CHROMIUM_NAMES):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def _install_debian_chromium() -> str:
    """On a fresh Debian or Ubuntu machine, as root: Debian's own ``chromium`` package (the package
    manager, not a browser download of ours). Returns what apt said when it did not work."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root, or no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT, check=False)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {done.stderr.strip()[-500:]}"
    return ""


def find_chromium() -> str:
    """The browser for these tests; installed with apt when missing, so that the README's one test
    command works on a fresh machine that has only Python and Node."""
    found = _which_chromium()
    if found:
        return found
    problem = _install_debian_chromium()
    found = _which_chromium()
    if found:
        return found
    pytest.fail(f"No Chromium for the web UI tests ({problem}): install Debian's browser with "
                "`apt-get update && apt-get install -y chromium` (or set AIBRIDGE_CHROMIUM to a Chrome binary).",
                pytrace=False)


@pytest.fixture(scope="module")
async def devtools() -> AsyncIterator[DevTools]:
    binary = find_chromium()
    workdir = Path(tempfile.mkdtemp(prefix="aibridge-chromium-"))
    profile = workdir / "profile"
    log = (workdir / "chromium.log").open("wb")
    # Own process group: Chromium forks helpers (zygote, renderers) that must go with it.
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             f"--window-size={WINDOW[0]},{WINDOW[1]}", "about:blank"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    active_port = profile / "DevToolsActivePort"
    deadline = time.monotonic() + BROWSER_START_TIMEOUT
    while not (active_port.exists() and len(active_port.read_text().splitlines()) >= 2):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop_browser(proc)
            pytest.fail(f"Chromium ({binary}) did not start:\n{Path(log.name).read_text(errors='replace')[-3000:]}",
                        pytrace=False)
        await asyncio.sleep(0.05)
    port, ws_path = active_port.read_text().splitlines()[:2]
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(f"ws://127.0.0.1:{port}{ws_path}", max_msg_size=0)
        tools = DevTools(ws)
        yield tools
        with contextlib.suppress(Exception):
            await tools.send("Browser.close", timeout=5)
        await ws.close()
        tools.reader.cancel()
    finally:
        await session.close()
        _stop_browser(proc)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _stop_browser(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)      # the group we created at launch, and only it
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@pytest.fixture
async def page(devtools: DevTools) -> AsyncIterator[Page]:
    tab = await devtools.new_page()
    try:
        yield tab
    finally:
        await tab.close()


async def sign_in(page: Page, url: str, token: str, username: str) -> None:
    await page.goto(url + "/aibridge/")
    await page.wait("!document.querySelector('#signin-view').hidden", "the sign-in box")
    await page.type("#token-input", token)
    await page.click("#signin-form button[type=submit]")
    await page.wait(f"document.querySelector('#who-name').textContent.includes({json.dumps(username)})",
                    f"{username} to be signed in")


ROWS = "#interceptions-table tbody tr"


async def rows_loaded(page: Page, count: int | None = None) -> list[str]:
    """Waits for the interceptions table to finish loading (with ``count`` rows) and returns the rows' text."""
    condition = f"document.querySelectorAll({json.dumps(ROWS)}).length" + (f" === {count}" if count else " > 0")
    await page.wait(f"document.querySelector('#interceptions-view').getAttribute('aria-busy') === 'false' "
                    f"&& {condition}", f"{count or 'some'} interception rows")
    return await page.texts(ROWS)


# ---------------------------------------------------------------- in the browser

async def test_member_sees_only_own_interceptions(traffic: Traffic, page: Page) -> None:
    url = traffic.bridge.server.url
    await sign_in(page, url, traffic.alice, "alice")
    assert await page.text("#who-role") == "member"
    rows = await rows_loaded(page, len(ALICE) + 1)
    for model, prompt in ALICE.items():
        assert any(model in row for row in rows), model
        assert any(prompt[:60] in row for row in rows), prompt
    for model, prompt in BOB.items():
        assert not any(model in row or prompt in row for row in rows)
    assert all("alice" in row and "bob" not in row and "carol" not in row for row in rows)
    assert "1\N{EN DASH}4 of 4 interceptions" in await page.text("#interceptions-count")
    assert await page.js("document.querySelector('#interceptions-older').disabled")
    # The newest first: Claude Code (twice), then the Responses call, then the chat call with the HTML prompt.
    assert "Claude Code" in rows[0] and "claude-sonnet-4-5-scenario-tool" in rows[0]
    assert XSS_PROMPT in rows[3]
    assert await page.js("sessionStorage.getItem('aibridge.token')") == traffic.alice
    assert not page.problems()


async def test_html_in_a_prompt_is_shown_as_text(traffic: Traffic, page: Page) -> None:
    await sign_in(page, traffic.bridge.server.url, traffic.alice, "alice")
    rows = await rows_loaded(page, len(ALICE) + 1)
    xss_row = next(i for i, row in enumerate(rows) if "gpt-4.1-scenario-tool" in row)
    await page.click(f"{ROWS}:nth-child({xss_row + 1})")
    await page.wait("!document.querySelector('#detail').hidden", "the detail panel")
    assert await page.texts("#detail-body pre.prompt-text") == [XSS_PROMPT]
    assert await page.text(f"{ROWS}:nth-child({xss_row + 1}) td.prompt") == XSS_PROMPT
    # Nothing of the prompt became markup: no image, no script, no dialog, no request for "x".
    assert await page.js("document.querySelectorAll('main img, #detail img, main script, #detail script').length") == 0
    assert await page.js("document.querySelector('#detail-body td, #detail-body pre') !== null")
    assert not [u for u in page.requested() if u.rstrip("/").endswith("/x")]
    assert not page.events("Page.javascriptDialogOpening")
    # The detail panel shows the tool call with its input, and the token usage.
    tool_names = await page.texts("#detail-body .tool-name")
    assert len(tool_names) == 1 and tool_names[0]
    assert await page.texts("#detail-body .tool pre")
    assert "Token usage (1)" in await page.text("#detail-body")
    # An innerHTML sink is refused outright by the page's Trusted Types policy.
    refused = await page.js("(() => { try { document.body.innerHTML = '<b>x</b>'; return false; } "
                            "catch (e) { return e instanceof TypeError; } })()")
    assert refused is True
    page.devtools.events.clear()      # the probe above logs its own (expected) violation
    await page.js("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}))")
    await page.wait("document.querySelector('#detail').hidden", "the panel to close")


async def test_detail_panel_shows_prompt_usage_tools_and_thoughts(traffic: Traffic, page: Page) -> None:
    await sign_in(page, traffic.bridge.server.url, traffic.alice, "alice")
    rows = await rows_loaded(page, len(ALICE) + 1)
    index = next(i for i, row in enumerate(rows) if "gpt-5-scenario-simple" in row)
    await page.click(f"{ROWS}:nth-child({index + 1})")
    await page.wait("!document.querySelector('#detail').hidden", "the detail panel")
    body = await page.text("#detail-body")
    assert ALICE["gpt-5-scenario-simple"] in body
    assert "Thinking (1)" in body and await page.texts("#detail-body pre.thought")
    assert "Streaming" in body and "yes" in body
    status, export = await Client(traffic.bridge.server.url, traffic.alice).get(
        "/api/v2/aibridge/interceptions?q=model:gpt-5-scenario-simple")
    assert status == 200
    record = export["results"][0]
    assert record["id"] in body
    usage = record["token_usages"][0]
    cells = await page.texts("#detail-body table tbody tr:first-child td")
    assert cells[0] == usage["provider_response_id"]
    assert [int(c.replace(",", "")) for c in cells[1:5]] == [
        usage["input_tokens"], usage["output_tokens"], usage["cache_read_input_tokens"],
        usage["cache_write_input_tokens"]]
    await page.screenshot("aibridge-ui-detail.png")
    await page.click("#detail-close")
    await page.wait("document.querySelector('#detail').hidden", "the panel to close")
    assert not page.problems()


async def test_filters_build_the_query(traffic: Traffic, page: Page) -> None:
    await sign_in(page, traffic.bridge.server.url, traffic.owner, "admin")
    await rows_loaded(page, 50)
    await page.type("#filters input[name=model]", "claude-sonnet-4-5-scenario-tool")
    await page.type("#filters input[name=client]", "Claude Code")        # a space: the term must be quoted
    await page.click("#filters button[type=submit]")
    rows = await rows_loaded(page, 2)
    assert all("claude-sonnet-4-5-scenario-tool" in row and "Claude Code" in row for row in rows)
    await page.click("#filters button[type=reset]")
    await rows_loaded(page, 50)
    # A time window in the future matches nothing; the page says so instead of showing stale rows.
    await page.type("#filters input[name=initiator]", "alice")
    await page.js("document.querySelector('#filters input[name=started_after]').value = '2999-01-01T00:00:00'")
    await page.click("#filters button[type=submit]")
    await page.wait("!document.querySelector('#interceptions-view .empty').hidden", "the empty message")
    assert await page.js(f"document.querySelectorAll({json.dumps(ROWS)}).length") == 0
    assert not page.problems()


async def test_older_pages_follow_the_cursor(traffic: Traffic, page: Page) -> None:
    await sign_in(page, traffic.bridge.server.url, traffic.owner, "admin")
    await rows_loaded(page)
    await page.type("#filters input[name=initiator]", "carol")
    await page.click("#filters button[type=submit]")
    await page.wait(f"document.querySelector('#interceptions-count').textContent.endsWith('of {CAROL_REQUESTS} "
                    "interceptions')", "carol's interceptions")
    first = await rows_loaded(page, 50)
    assert f"1\N{EN DASH}50 of {CAROL_REQUESTS}" in await page.text("#interceptions-count")
    assert await page.js("document.querySelector('#interceptions-newer').disabled")
    await page.click("#interceptions-older")
    second = await rows_loaded(page, CAROL_REQUESTS - 50)
    assert f"51\N{EN DASH}{CAROL_REQUESTS} of {CAROL_REQUESTS}" in await page.text("#interceptions-count")
    assert await page.js("document.querySelector('#interceptions-older').disabled")
    prompts = {row.split("carol question ")[1].split()[0] for row in first + second}
    assert len(prompts) == CAROL_REQUESTS, "every interception appears exactly once across the pages"
    await page.click("#interceptions-newer")
    assert await rows_loaded(page, 50) == first
    assert not page.problems()


async def test_owner_sees_everyone_in_the_usage_leaderboard(traffic: Traffic, page: Page) -> None:
    await sign_in(page, traffic.bridge.server.url, traffic.owner, "admin")
    assert await page.text("#who-role") == "owner"
    rows = await rows_loaded(page, 50)
    assert any("carol" in row for row in rows)
    await page.click("#tabs a[data-view=usage]")
    await page.wait("document.querySelectorAll('#usage-users .bar-row').length >= 3", "the user leaderboard")
    users = await page.texts("#usage-users .bar-name")
    assert set(users) == {"alice", "bob", "carol"}
    models = set(await page.texts("#usage-models .bar-name"))
    assert {*ALICE, *BOB, "gpt-4.1-mini-scenario-simple"} <= models
    # The leaderboard is computed from the same export the API gives: check the order and the totals.
    status, export = await Client(traffic.bridge.server.url, traffic.owner).get(
        "/api/v2/aibridge/interceptions?limit=1000")
    assert status == 200
    expected: dict[str, int] = {}
    for rec in export["results"]:
        name = rec["initiator"]["username"]
        expected[name] = expected.get(name, 0) + sum(
            u[k] for u in rec["token_usages"] for k in
            ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens"))
    values = [int(v.replace(",", "")) for v in await page.texts("#usage-users .bar-value")]
    assert dict(zip(users, values, strict=True)) == expected
    assert values == sorted(values, reverse=True)
    widths = await page.js("[...document.querySelectorAll('#usage-users .bar-track')].map("
                           "t => [...t.children].reduce((w, s) => w + s.getBoundingClientRect().width, 0))")
    assert widths[0] > 0 and widths == sorted(widths, reverse=True), "the bars are scaled to the totals"
    # Drawn from the server's aggregates (any period, every interception), not from a sample of the
    # export computed in the browser.
    fetched = await page.js("performance.getEntriesByType('resource').map(e => e.name)")
    assert any("/api/v2/aibridge/spend?group_by=user" in u for u in fetched), fetched
    assert not any("/aibridge/interceptions?" in u and "limit=1000" in u for u in fetched), fetched
    assert "Computed in your browser" not in await page.text("#usage-note")
    cost_stat = await page.js("[...document.querySelectorAll('#usage-stats .stat')].find("
                              "s => s.textContent.endsWith('Cost')).querySelector('.stat-value').textContent")
    assert cost_stat.startswith("$")
    await page.screenshot("aibridge-ui-usage.png")
    assert not page.problems()


async def test_sessions_tab_opens_a_session_its_threads_and_interceptions(traffic: Traffic, page: Page) -> None:
    await sign_in(page, traffic.bridge.server.url, traffic.alice, "alice")
    await rows_loaded(page)
    await page.click("#tabs a[data-view=sessions]")
    await page.wait("document.querySelectorAll('#sessions-table tbody tr').length === 1", "the session row")
    row = (await page.texts("#sessions-table tbody tr"))[0]
    assert SESSION_ID in row and "Claude Code" in row and "alice" in row
    assert ALICE["claude-sonnet-4-5-scenario-tool"] in row                 # the last prompt
    await page.click("#sessions-table tbody tr")
    await page.wait("!document.querySelector('#detail').hidden", "the session panel")
    assert SESSION_ID in await page.text("#detail-title")
    # One thread: the prompt, its two actions (the tool call, then the answer to the tool result).
    await page.wait("document.querySelectorAll('#detail-body section.thread').length === 1", "the thread")
    thread = await page.text("#detail-body section.thread")
    assert "Thread 1" in thread and "2 actions" in thread and ALICE["claude-sonnet-4-5-scenario-tool"] in thread
    inner = "#detail-body section.thread table tbody tr"
    assert len(await page.texts(inner)) == 2
    assert await page.text("#detail-body section.thread .tool .tool-name") == "get_weather"
    assert "Lisbon" in await page.text("#detail-body section.thread .tool pre")
    await page.click(inner)
    await page.wait("!document.querySelector('#detail-back').hidden", "the interception inside the session")
    assert "claude-sonnet-4-5-scenario-tool" in await page.text("#detail-title")
    await page.click("#detail-back")
    await page.wait(f"document.querySelector('#detail-title').textContent.includes({json.dumps(SESSION_ID)})",
                    "back to the session")
    await page.screenshot("aibridge-ui-session.png")
    assert not page.problems()


async def test_api_errors_are_shown_readably(traffic: Traffic, page: Page) -> None:
    await sign_in(page, traffic.bridge.server.url, traffic.alice, "alice")
    await rows_loaded(page)
    # The browser answers the next sessions call itself, as a failing server would.
    await page.send("Fetch.enable", {"patterns": [{"urlPattern": "*/api/v2/aibridge/sessions*"}]})
    await page.click("#tabs a[data-view=sessions]")
    paused = await wait_for(lambda: _first(page.events("Fetch.requestPaused")))
    assert paused, "the sessions call was not made"
    body = json.dumps({"message": "internal server error", "detail": "the error was logged on the server"})
    await page.send("Fetch.fulfillRequest", {
        "requestId": paused["requestId"], "responseCode": 500,
        "responseHeaders": [{"name": "Content-Type", "value": "application/json"}],
        "body": base64.b64encode(body.encode()).decode()})
    await page.send("Fetch.disable")
    await page.wait("!document.querySelector('#banner').hidden", "the error banner")
    assert await page.text("#banner-text") == \
        "500: internal server error (the error was logged on the server)"
    assert await page.js("!document.querySelector('#sessions-view').hidden"), "a server error is no sign-out"
    # The next successful load clears the message.
    await page.click("#tabs a[data-view=interceptions]")
    await page.wait("document.querySelector('#banner').hidden", "the banner to go")
    assert not page.problems()


async def _first(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    return items[0] if items else None


async def test_rejected_token_returns_to_sign_in(traffic: Traffic, page: Page) -> None:
    url = traffic.bridge.server.url
    await page.goto(url + "/aibridge/")
    await page.type("#token-input", "00000000-notarealtoken")
    await page.click("#signin-form button[type=submit]")
    await page.wait("!document.querySelector('#signin-error').hidden", "the sign-in error")
    assert "403" in await page.text("#signin-error")
    await page.screenshot("aibridge-ui-signin.png")
    assert await page.js("sessionStorage.getItem('aibridge.token')") is None
    # Signed in, then the token stops working (revoked, expired): the next call lands on the sign-in box.
    await sign_in(page, url, traffic.alice, "alice")
    await rows_loaded(page)
    await page.js("sessionStorage.setItem('aibridge.token', 'revoked-token')")
    await page.click("#tabs a[data-view=sessions]")
    await page.wait("!document.querySelector('#signin-view').hidden", "the sign-in box after a 403")
    assert "rejected" in await page.text("#signin-error")
    assert await page.js("document.querySelector('#tabs').hidden")
    assert await page.js(f"document.querySelectorAll({json.dumps(ROWS)}).length") == 0
    # Sign-out forgets the token.
    await sign_in(page, url, traffic.alice, "alice")
    await page.click("#sign-out")
    await page.wait("!document.querySelector('#signin-view').hidden", "the sign-in box after sign-out")
    assert await page.js("sessionStorage.getItem('aibridge.token')") is None
    assert not page.problems()


async def test_a_suspended_account_is_told_so(traffic: Traffic, page: Page) -> None:
    """Off-boarding as the user sees it: signed in, suspended by an owner, then told plainly."""
    url = traffic.bridge.server.url
    token = traffic.bridge.server.create_user("dora")
    await sign_in(page, url, token, "dora")
    status, user = await Client(url, traffic.owner).post("/api/v2/users/dora/status/suspend")
    assert status == 200 and user["status"] == "suspended"
    await page.click("#tabs a[data-view=sessions]")
    await page.wait("!document.querySelector('#signin-view').hidden", "the sign-in box after the suspension")
    assert "This account is suspended" in await page.text("#signin-error")
    await page.type("#token-input", token)
    await page.click("#signin-form button[type=submit]")
    await page.wait("document.querySelector('#signin-error').textContent.includes('ask an owner')",
                    "the suspension to be explained at sign-in")
    assert (await Client(url, traffic.owner).post("/api/v2/users/dora/status/activate"))[0] == 200
    assert not page.problems()


async def test_screenshot_of_the_dashboard(traffic: Traffic, page: Page) -> None:
    """The picture a reviewer looks at: the owner's interceptions with one opened."""
    await sign_in(page, traffic.bridge.server.url, traffic.owner, "admin")
    await page.type("#filters input[name=initiator]", "alice")
    await page.click("#filters button[type=submit]")
    rows = await rows_loaded(page, len(ALICE) + 1)
    await page.screenshot("aibridge-ui-table.png")
    index = next(i for i, row in enumerate(rows) if "gpt-4.1-scenario-tool" in row)
    await page.click(f"{ROWS}:nth-child({index + 1})")
    await page.wait("!document.querySelector('#detail').hidden", "the detail panel")
    path = await page.screenshot("aibridge-ui.png")
    assert path.stat().st_size > 10_000
    assert not page.problems()


async def test_cost_view_shows_spend_per_user_model_and_day(traffic: Traffic, page: Page) -> None:
    """The Cost tab shows the server's spend export (priced when each interception ended)."""
    owner = Client(traffic.bridge.server.url, traffic.owner)
    status, by_user = await owner.get("/api/v2/aibridge/spend?group_by=user")
    assert status == 200
    await sign_in(page, traffic.bridge.server.url, traffic.owner, "admin")
    await rows_loaded(page, 50)
    await page.click("#tabs a[data-view=cost]")
    await page.wait("document.querySelectorAll('#cost-users tbody tr').length >= 3", "the cost per user")
    cells = await page.js("[...document.querySelectorAll('#cost-users tbody tr')].map("
                          "r => [...r.children].map(c => c.textContent))")
    shown = {row[0]: (int(row[1]), float(row[2].lstrip("$").replace(",", ""))) for row in cells}
    expected = {r["user"]: (r["requests"], r["cost_usd"]) for r in by_user["results"]}
    assert shown.keys() == expected.keys() >= {"alice", "bob", "carol"}
    for user, (requests, cost) in expected.items():
        assert shown[user][0] == requests and shown[user][1] == pytest.approx(cost, abs=0.00005)
    assert cost > 0
    models = await page.texts("#cost-models tbody tr td:first-child")
    assert "gpt-4.1-mini-scenario-simple" in models and "claude-haiku-4-5-scenario-cached" in models
    days = await page.texts("#cost-days tbody tr td:first-child")
    assert days == [time.strftime("%Y-%m-%d", time.gmtime())]
    total = await page.text("#cost-total")
    assert float(total.lstrip("$")) == pytest.approx(by_user["total_usd"], abs=0.00005)
    assert await page.text("#cost-budget") == "No budget applies to you."
    await page.screenshot("aibridge-ui-cost.png")
    assert not page.problems()


async def test_member_cost_view_shows_own_spend_and_budget(traffic: Traffic, page: Page) -> None:
    owner = Client(traffic.bridge.server.url, traffic.owner)
    assert (await owner.request("PUT", "/api/v2/aibridge/budgets/user:bob", {"period": "month",
                                                                               "limit_usd": 50}))[0] == 200
    try:
        await sign_in(page, traffic.bridge.server.url, traffic.bob, "bob")
        await rows_loaded(page)
        await page.click("#tabs a[data-view=cost]")
        await page.wait("document.querySelectorAll('#cost-users tbody tr').length >= 1", "the member's own cost")
        assert await page.texts("#cost-users tbody tr td:first-child") == ["bob"]
        budget = await page.text("#cost-budget")
        assert budget.startswith("Your budget: $") and "of $50.00 this month" in budget
        assert not page.problems()
    finally:
        assert (await owner.request("DELETE", "/api/v2/aibridge/budgets/user:bob"))[0] == 204
