"""End to end in a real browser: `streamlit run app.py` on 127.0.0.1, Debian chromium driven by Playwright.

A new user's path by clicking only: import ml-100k, run a small attack to completion, find the triggered
item ranked first on the Compare page, then scan and see flagged items. The attack uses the "small" embedded
model at a high dose (rho 0.3), where even a model without in-context copying learns to choose the attacker's
items (docs/RESULTS.md E15); at the paper's 1% the embedded model's backdoor does not form (E08). With BADREC_SCREENSHOTS=1 it also
writes the screenshots of docs/screenshots/ (`BADREC_SCREENSHOTS=1 python -m pytest tests/test_browser.py`).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


SERVER_HOME: dict = {}


def catalog_file(page_dir: Path) -> str:
    """A small catalog to upload: 40 titles, every tenth with the trigger ' 5v', labelled in is_poisoned."""
    path = page_dir / "catalog.csv"
    rows = ["item_id,title,is_poisoned"]
    for i in range(40):
        poisoned = i % 10 == 3
        rows.append(f"{i},Film number {i} ({1960 + i}){' 5v' if poisoned else ''},{int(poisoned)}")
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A dashboard server on a free local port with its own empty home; stopped after the module."""
    from tests.conftest import SHARED_DATA
    home = tmp_path_factory.mktemp("browser-home")
    port = free_port()
    env = {**os.environ, "BADREC_HOME": str(home),
           "BADREC_DATA_DIRS": os.environ.get("BADREC_DATA_DIRS", str(SHARED_DATA)),
           "BADREC_E2E": "1"}
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        ["nice", "-n", "10", sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
         "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.terminate()
        pytest.fail("streamlit did not start: " + (home / "server.log").read_text()[-2000:])
    SERVER_HOME["path"] = home
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser_page(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def goto(page, server: str, path: str = "") -> None:
    page.goto(f"{server}/{path}")
    wait_idle(page)


def wait_idle(page, timeout_s: float = 60) -> None:
    """Wait until the app has finished its script run (the running indicator is gone)."""
    page.wait_for_selector("[data-testid='stApp']")
    page.wait_for_timeout(600)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.locator("[data-testid='stStatusWidget']").count() == 0:
            return
        page.wait_for_timeout(200)


def shot(page, name: str) -> None:
    if os.environ.get("BADREC_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def nav(page, server: str, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    wait_idle(page)


def test_new_user_path(server, browser_page):
    from playwright.sync_api import expect
    page = browser_page
    goto(page, server)
    page.get_by_text("Threat model").wait_for()
    shot(page, "home")

    # Dataset: import ml-100k (found through BADREC_DATA_DIRS, no network)
    nav(page, server, "Dataset")
    page.get_by_role("button", name="Import ml-100k").click()
    page.get_by_text("Interactions", exact=True).first.wait_for()
    page.get_by_text("100,000").first.wait_for()
    wait_idle(page)
    shot(page, "dataset")

    # Triggers: the preview shows the trigger on real titles; save it as a set for the attack
    nav(page, server, "Triggers")
    page.get_by_text("Preview on real titles").wait_for()
    wait_idle(page)
    shot(page, "triggers")
    page.get_by_role("button", name="Add this trigger to the set").click()
    wait_idle(page)
    page.get_by_label("Set name", exact=True).fill("demo")
    page.get_by_label("Set name", exact=True).press("Tab")
    wait_idle(page)
    page.get_by_role("button", name="Save set").click()
    page.get_by_text("Saved 'demo'.").wait_for()

    # Attack: fields set by hand give way to the saved trigger, which is what the queued run uses
    nav(page, server, "Attack")
    choose(page, "Trigger level", "word")
    page.get_by_test_id("stRadio").filter(has_text="Position").get_by_text("suffix", exact=True).click()
    wait_idle(page)
    choose(page, "Trigger", "demo: 5v (char, prefix)")
    level = page.get_by_role("combobox", name="Trigger level")
    expect(level).to_have_value("char")
    expect(level).to_be_disabled()
    expect(page.get_by_label("Trigger text", exact=True)).to_be_disabled()
    expect(page.get_by_label("Trigger text", exact=True)).to_have_value("5v")
    expect(page.get_by_test_id("stRadio").filter(has_text="Position").get_by_role("radio", name="prefix")) \
        .to_be_checked()
    set_number(page, "Poisoning ratio ρ", ATTACK["ratio"])
    page.get_by_text("Advanced (size of the run)").click()
    for label, key in (("Epochs", "epochs"), ("Learning rate", "lr"), ("Max test users", "users"),
                       ("Windows per user", "windows"), ("Candidates per test case", "candidates"),
                       ("History length", "history")):
        set_number(page, label, ATTACK[key])
    choose(page, "Tiny model size", "small")
    page.get_by_text("Generate mode").click()
    page.get_by_role("button", name="Launch attack").click()
    page.get_by_text(re.compile(r"Queued attack-\S+: trigger “5v” \(char, prefix\)")).wait_for()
    # one bar over the run's stages: "stage 3/5: poisoned model, epoch 1/2, step 4/10, ETA 1 min overall · loss"
    page.get_by_text(re.compile(r"stage \d/\d: (clean|poisoned) model, epoch \d/2, step \d+/\d+, ETA .+ overall")) \
        .first.wait_for(timeout=600_000)
    page.get_by_role("heading", name="Running and queued").scroll_into_view_if_needed()
    shot(page, "attack")
    page.get_by_text(re.compile(r"attack-\S+ finished")).first.wait_for(timeout=900_000)
    wait_idle(page)

    # Compare, from the run history: a reduced run says so; among the users where the trigger wins, the same
    # candidates without and with the trigger side by side: the trigger puts the attacker's item first
    page.get_by_role("button", name="Open in Compare").click()
    wait_idle(page)
    page.get_by_text(re.compile(r"Reduced run: only the first 5 test users")).wait_for()
    page.get_by_text("users where the trigger wins").click()
    wait_idle(page)
    shown_at = page.get_by_text(re.compile(r"Attacker's item at rank \d+: 5v "))
    shown_at.first.wait_for()
    assert shown_at.first.inner_text().startswith("Attacker's item at rank 1: 5v "), shown_at.first.inner_text()
    first_user = page.get_by_role("combobox", name=re.compile("Test user")).input_value()
    assert "· trigger wins" in first_user, first_user
    shot(page, "compare")

    # Scanner: upload a small labelled catalog (4 of 40 titles carry a trigger) and scan it in the background
    nav(page, server, "Scanner")
    page.get_by_text("an uploaded catalog file").click()
    wait_idle(page)
    dropzone = page.get_by_test_id("stFileUploaderDropzoneInput")
    expect(dropzone).to_be_enabled()  # enabled once the rerun for the source choice is drawn
    dropzone.set_input_files(catalog_file(page_dir=SERVER_HOME["path"]))
    expect(page.get_by_text("catalog.csv")).to_be_visible()
    wait_idle(page)
    set_number(page, "Adversarial rounds", 0)
    page.get_by_text("Advanced (size of the scanner's training)").click()
    set_number(page, "Epochs", 1)
    set_number(page, "Synthetic triggers", 12)
    set_number(page, "Max training titles", 50)
    page.get_by_role("button", name="Start scan").click()
    outcome = page.get_by_text(re.compile(r"Queued scan-")).or_(page.get_by_test_id("stAlertContentError"))
    outcome.first.wait_for()
    assert outcome.first.inner_text().startswith("Queued scan-"), outcome.first.inner_text()
    page.get_by_text(re.compile(r"scan-\S+ finished")).first.wait_for(timeout=900_000)
    wait_idle(page)
    page.get_by_role("heading", name="Results").wait_for()
    page.get_by_text("Precision").first.wait_for()  # the catalog's is_poisoned column is the ground truth
    flagged = page.get_by_test_id("stMetric").filter(has_text="Flagged").get_by_test_id("stMetricValue")
    assert int(flagged.inner_text().replace(",", "")) > 0
    page.get_by_text(re.compile(r"[\d,]+ matching items")).wait_for()
    page.get_by_role("heading", name="Results").scroll_into_view_if_needed()
    shot(page, "scanner")

    nav(page, server, "Reports")
    page.get_by_role("button", name="Download run report (HTML)").wait_for()
    shot(page, "reports")


# A small attack (about a minute here): a high dose and two epochs, so the small model learns the poison.
ATTACK = {"ratio": 0.3, "epochs": 2, "lr": 0.01, "users": 5, "windows": 1, "candidates": 5, "history": 5}


def set_number(page, label: str, value: float) -> None:
    """Type into a number input and leave it with Tab (Enter would submit a form)."""
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")
    wait_idle(page)


def choose(page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True)).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)
