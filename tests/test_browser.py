"""What a reader sees: the notebooks' widgets in JupyterLab, driven in headless Chromium.

nbval executes cells but cannot see a widget. Here a real JupyterLab (started from this Python environment)
serves a *copy* of the notebooks; Playwright drives Debian's Chromium (never a downloaded browser): open a
notebook, wait for the kernel, run all cells, check that no cell shows an error, move a slider with the
keyboard, and check that the readout shows the new value and the plotted figure changed. Screenshots go to
``test-artifacts/`` (not committed) for a person to look at.

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

# (notebook, slider label, what the slider controls): the label is the slider's `description`.
CASES = [
    ("02_discretization.ipynb", "Δ"),
    ("01_continuous_ssm.ipynb", None),
    ("03_recurrence_and_convolution.ipynb", "Δ"),
]


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


def _run_all(page, timeout_ms: int) -> None:
    page.click("text=Run", timeout=10_000)
    page.click("[data-command='runmenu:run-all']")
    # Running: a prompt shows [*]. Done: no [*] left and the kernel idle.
    page.wait_for_function(
        """() => document.querySelectorAll('.jp-InputPrompt').length > 0 &&
                 ![...document.querySelectorAll('.jp-InputPrompt')].some(e => e.textContent.includes('[*]'))
                 && ![...document.querySelectorAll('.jp-InputPrompt')].some(e => /\\[ \\]/.test(e.textContent))""",
        timeout=timeout_ms,
    )
    _wait_kernel_idle(page, timeout_ms)


def _slider(page, label: str | None):
    sliders = page.locator(".widget-slider")
    if label is not None:
        sliders = sliders.filter(has=page.locator(".widget-label", has_text=label))
    assert sliders.count() > 0, f"no slider labelled {label!r} found in the notebook"
    return sliders.first


def _widget_box(slider):
    # The outermost widget box around the slider: its controls and the output the slider drives.
    return slider.locator(
        "xpath=ancestor::div[contains(@class,'widget-vbox') or contains(@class,'widget-box')][last()]"
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


@pytest.mark.parametrize(("notebook", "label"), CASES, ids=[c[0].split("_")[0] for c in CASES])
def test_widget_in_jupyterlab(lab, browser, notebook, label):
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
        _run_all(page, 120_000)

        errors = page.locator(
            "[data-mime-type='application/vnd.jupyter.error'], .jp-OutputArea-output.jp-mod-error"
        )
        assert errors.count() == 0, f"{notebook}: a cell shows an error: {errors.first.inner_text()[:500]}"

        slider = _slider(page, label)
        slider.scroll_into_view_if_needed()
        readout = slider.locator(".widget-readout")
        box = _widget_box(slider)
        img = box.locator("img").first  # the figure this slider drives
        img.wait_for(timeout=30_000)
        before_value, before_src = readout.inner_text().strip(), _stable_src(img, page)

        handle = slider.locator(".noUi-handle, .ui-slider-handle").first
        handle.focus()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        after_src = _stable_src(img, page, differ_from=before_src)
        after_value = readout.inner_text().strip()
        box.screenshot(path=str(ARTIFACTS / f"browser_{notebook.removesuffix('.ipynb')}.png"))

        assert after_value != before_value, (
            f"{notebook}: the slider readout did not change ({before_value!r})"
        )
        # The readout shows the slider's new value (the handle's aria-valuenow is the model's value).
        now = handle.get_attribute("aria-valuenow")
        if now is not None:
            # (noUiSlider writes aria-valuenow rounded to one decimal)
            assert float(after_value) == pytest.approx(float(now), abs=0.051), (after_value, now)
        assert after_src != before_src, f"{notebook}: the figure did not change after moving the slider"
    finally:
        page.close()
