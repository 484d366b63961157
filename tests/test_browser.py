"""What a reader sees: the notebooks' widgets in JupyterLab, driven in headless Chromium.

nbval executes cells but cannot see a widget. Here a real JupyterLab (started from this Python environment)
serves a *copy* of the notebooks; Playwright drives Debian's Chromium (never a downloaded browser). For every
notebook with a widget (found in the committed notebooks): open it, wait for the kernel, run all cells, check
that no cell shows an error, then move every control of every widget once (a slider with the keyboard, a
dropdown to another option) and check that its value and the widget's figure changed, and that no error
appeared. Screenshots of each widget go to ``test-artifacts/`` (not committed) for a person to look at.

Skipped, with the reason, only where Chromium or Playwright is missing (``.ci/run`` installs both).
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from test_notebook_widgets import widget_cells

pytestmark = pytest.mark.browser

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Every notebook with a widget, found in the committed notebooks (test_notebook_widgets.widget_cells): a new
#: widget notebook is covered without an edit here.
CASES = [
    path.name
    for path in sorted((ROOT / "notebooks").glob("*.ipynb"))
    if widget_cells(json.loads(path.read_text()))
]
#: the longest a notebook may take to run all its cells in the browser (FAST=1)
RUN_ALL_MS = 600_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def playwright_api():
    if not pathlib.Path(CHROMIUM).exists():
        pytest.skip(
            f"Chromium not found at {CHROMIUM}: install Debian's `chromium` (apt-get install chromium)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    return sync_api


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 with a random port and token, serving a copy of notebooks/."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = tmp / "settings"
    notif = settings / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True)
    (notif / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
        FAST="1",
    )
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the notebook's outputs, errors included
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "lab.log", "w")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start:\n{(tmp / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, token
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(playwright_api):
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _wait_kernel_idle(page, timeout_ms: int) -> None:
    # The toolbar's indicator says idle before a kernel exists: wait for the status bar's "… | Idle".
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-StatusBar-TextItem, .jp-StatusBar-Item')]
                .some(e => /\\|\\s*Idle/.test(e.textContent))""",
        timeout=timeout_ms,
    )


#: The error outputs of the open notebook ("ename: evalue"), read from its model: JupyterLab renders an error
#: and a stream to stderr alike (both as application/vnd.jupyter.stderr), so the page cannot tell them apart.
ERRORS_JS = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const cells = panel.content.model.cells, errors = [];
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type !== 'code') continue;
        for (let j = 0; j < cell.outputs.length; j++) {
            const out = cell.outputs.get(j).toJSON();
            if (out.output_type === 'error') errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
        }
    }
    return errors;
}"""


def _errors(page) -> list[str]:
    return page.evaluate(ERRORS_JS)


def _run_all(page, timeout_ms: int) -> None:
    page.click("text=Run", timeout=10_000)
    page.click("[data-command='runmenu:run-all']")
    # Running: a prompt shows [*]. Done: no [*] left, and every cell run (no [ ] left) or one stopped on an error.
    page.wait_for_function(
        f"""() => {{
            const prompts = [...document.querySelectorAll('.jp-InputPrompt')];
            if (prompts.length === 0 || prompts.some(e => e.textContent.includes('[*]'))) return false;
            return ({ERRORS_JS})().length > 0 || !prompts.some(e => /\\[ \\]/.test(e.textContent));
        }}""",
        timeout=timeout_ms,
    )
    _wait_kernel_idle(page, timeout_ms)


def _widget_outputs(page):
    """The cell outputs that hold a widget with controls (tqdm's progress bars have none)."""
    return page.locator(".jp-OutputArea-child > .jp-OutputArea-output").filter(
        has=page.locator(".widget-slider, .widget-dropdown")
    )


def _stable_src(img, page, differ_from: str | None = None, timeout_s: float = 45.0) -> str:
    """The figure's image once it stops changing (each key press re-renders it).

    With ``differ_from``, first wait (up to the timeout) for an image other than that one: on a loaded
    machine one redraw can take seconds.
    """
    deadline = time.monotonic() + timeout_s
    while differ_from is not None and time.monotonic() < deadline:
        if img.get_attribute("src") != differ_from:
            break
        page.wait_for_timeout(250)
    last, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        src = img.get_attribute("src")
        if src != last:
            last, stable_since = src, time.monotonic()
        elif time.monotonic() - stable_since > 3.0:
            return src
        page.wait_for_timeout(250)
    return last


def _move_slider(page, slider) -> tuple[str, str]:
    """Five key presses on the slider's handle (to the left if it sits at its maximum): (readout before, after)."""
    readout = slider.locator(".widget-readout")
    handle = slider.locator(".noUi-handle, .ui-slider-handle").first
    before = readout.inner_text().strip()
    at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
    handle.focus()
    for _ in range(5):
        page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")
    page.wait_for_timeout(500)
    return before, readout.inner_text().strip()


def _move_dropdown(dropdown) -> tuple[str, str] | None:
    """Select another option: (value before, after); None if the dropdown has a single option."""
    select = dropdown.locator("select")
    before = select.input_value()
    values = [o.get_attribute("value") for o in select.locator("option").all()]
    other = [v for v in values if v != before]
    if not other:
        return None
    select.select_option(other[0])
    return before, select.input_value()


@pytest.mark.parametrize("notebook", CASES, ids=[c.split("_")[0] for c in CASES])
def test_widgets_in_jupyterlab(lab, browser, notebook):
    """Run all cells: no error. Then every control of every widget, moved once, changes its figure."""
    base, token = lab
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # A workspace of its own per notebook: otherwise JupyterLab restores the tabs of the previous test.
        workspace = notebook.split("_")[0]
        page.goto(f"{base}/lab/workspaces/nb{workspace}/tree/{notebook}?reset&token={token}", timeout=60_000)
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        page.wait_for_timeout(2_000)
        dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
        if dialog.count():  # a notebook without kernelspec metadata asks which kernel to start
            dialog.locator("button.jp-mod-accept").click()
        _wait_kernel_idle(page, 90_000)
        _run_all(page, RUN_ALL_MS)

        assert _errors(page) == [], f"{notebook}: a cell shows an error"

        boxes = _widget_outputs(page)
        expected = len(widget_cells(json.loads((ROOT / "notebooks" / notebook).read_text())))
        assert boxes.count() >= 1, f"{notebook}: no widget with controls rendered"
        assert boxes.count() <= expected, (boxes.count(), expected)
        moved = 0
        for b in range(boxes.count()):
            box = boxes.nth(b)
            box.scroll_into_view_if_needed()
            img = box.locator("img").first  # the figure this widget draws
            img.wait_for(timeout=60_000)
            controls = box.locator(".widget-slider, .widget-dropdown")
            for c in range(controls.count()):
                control = controls.nth(c)
                control.scroll_into_view_if_needed()
                name = control.locator(".widget-label").first.inner_text().strip() or f"control {c}"
                before_src = _stable_src(img, page)
                if "widget-dropdown" in (control.get_attribute("class") or ""):
                    values = _move_dropdown(control)
                    if values is None:
                        continue  # one option: nothing to move
                else:
                    values = _move_slider(page, control)
                assert values[1] != values[0], f"{notebook}, widget {b}, {name}: the value did not change"
                after_src = _stable_src(img, page, differ_from=before_src)
                assert after_src != before_src, (
                    f"{notebook}, widget {b}, {name} ({values[0]} -> {values[1]}): the figure did not change"
                )
                moved += 1
            box.screenshot(path=str(ARTIFACTS / f"browser_{notebook.removesuffix('.ipynb')}_{b}.png"))
            # a widget's callback that raises shows its traceback inside the widget, not in the cell's outputs
            stderr = box.locator("[data-mime-type='application/vnd.jupyter.stderr']")
            assert stderr.count() == 0, (
                f"{notebook}, widget {b} printed to stderr: {stderr.first.inner_text()[:500]}"
            )
        assert moved > 0, f"{notebook}: no control could be moved"
        assert _errors(page) == [], f"{notebook}: moving a control showed an error"
    finally:
        page.close()
