"""End to end in a real browser: `streamlit run app.py` on 127.0.0.1, Debian chromium driven by Playwright.

A new user's path by clicking only, on the smallest real configs (the `smoke` model, a 40-title catalog): import
ml-100k, save a trigger that then drives the attack's level and position, follow the run's one bar over its
stages, open it in Compare, scan an upload; then an empty upload refused before anything is queued, the Results
box following a newer scan by itself, and the attacker's real rank beyond the top 10. One server for the module.
The smoke model's numbers mean nothing (the page says so); the README's first 10 minutes reach a meaningful
Compare view with the `small` model. With BADREC_SCREENSHOTS=1 it also writes the screenshots of
docs/screenshots/ (`BADREC_SCREENSHOTS=1 python -m pytest tests/test_browser.py`).
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


def catalog_file(page_dir: Path, name: str = "catalog.csv") -> str:
    """A small catalog to upload: 40 titles, every tenth with the trigger ' 5v', labelled in is_poisoned."""
    path = page_dir / name
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
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),  # as nice as the test run itself
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
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=60_000)  # a rerun on a loaded 2-core machine can take seconds
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
    idle = 0
    while time.monotonic() < deadline and idle < 3:  # idle at three checks in a row: a loaded machine starts late
        idle = idle + 1 if page.locator("[data-testid='stStatusWidget']").count() == 0 else 0
        page.wait_for_timeout(250)


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
    tables = page.get_by_test_id("stDataFrame")
    shown = tables.count()
    page.get_by_role("button", name="Add this trigger to the set").click()
    expect(tables).to_have_count(shown + 1)  # the collected triggers' table: the click was taken
    wait_idle(page)
    save = page.get_by_role("button", name="Save set")
    for _ in range(3):  # a name typed while a loaded machine still reruns the page can be dropped: type it again
        page.get_by_label("Set name", exact=True).fill("demo")
        page.get_by_label("Set name", exact=True).press("Enter")
        wait_idle(page)
        if save.is_enabled():
            break
    save.click()
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
    choose(page, "Tiny model size", "smoke")
    page.get_by_text("Generate mode").click()
    wait_idle(page)
    expect(page.get_by_text(re.compile(r"Time before launch: about .+ here: base model .+ · poisoned model"))) \
        .to_be_visible()
    page.get_by_role("button", name="Launch attack").click()
    page.get_by_text(re.compile(r"Queued attack-\S+: trigger “5v” \(char, prefix\)")).wait_for()
    # one bar over the run's stages: "stage 3/4: poisoned model, epoch 1/1, step 4/10, ETA 1 min overall · loss";
    # past the base model's stage the bar is well on its way, not restarted at 0
    label = page.get_by_text(re.compile(r"stage [23]/4: (clean|poisoned) model, epoch \d/\d, step \d+/\d+, "
                                        r"ETA .+ overall"))
    finished = page.get_by_text(re.compile(r"attack-\S+ finished"))
    label.or_(finished).first.wait_for(timeout=600_000)  # a label missed by the 2 s poll must fail, not hang
    assert label.count(), "the run ended before the panel showed its training stage"
    bar = page.get_by_test_id("stProgress").get_by_role("progressbar").first
    assert float(bar.get_attribute("aria-valuenow")) >= 20, bar.get_attribute("aria-valuenow")
    page.get_by_role("heading", name="Running and queued").scroll_into_view_if_needed()
    shot(page, "attack")
    finished.first.wait_for(timeout=600_000)
    wait_idle(page)

    # Compare, from the run history: a toy, reduced run says so, and shows where the attacker's item ranks
    page.get_by_role("button", name="Open in Compare").click()
    wait_idle(page)
    page.get_by_text(re.compile(r"Reduced run: only the first 5 test users")).wait_for()
    page.get_by_text(re.compile(r"Toy victim")).first.wait_for()
    page.get_by_text(re.compile(r"Attacker's item at rank \d+")).first.wait_for()
    shot(page, "compare")

    # Scanner: upload a small labelled catalog (4 of 40 titles carry a trigger) and scan it in the background
    nav(page, server, "Scanner")
    page.get_by_text("an uploaded catalog file").click()
    wait_idle(page)
    upload(page, catalog_file(SERVER_HOME["path"]))
    smallest_scan_settings(page)
    expect(page.get_by_text(re.compile(r"Time before launch: scan about .+ scanner .+ · scoring"))).to_be_visible()
    first = start_scan(page)
    page.get_by_role("heading", name="Results").wait_for()
    page.get_by_text("Precision").first.wait_for()  # the catalog's is_poisoned column is the ground truth
    flagged = page.get_by_test_id("stMetric").filter(has_text="Flagged").get_by_test_id("stMetricValue")
    assert int(flagged.inner_text().replace(",", "")) > 0
    expect(page.get_by_text(f"Scan id {first}", exact=False)).to_be_visible()
    expect(page.get_by_role("combobox", name="Scan", exact=True)) \
        .to_have_value(re.compile(r"^catalog\.csv · .+ · mini scanner$"))
    page.get_by_text(re.compile(r"[\d,]+ matching items")).wait_for()
    page.get_by_role("heading", name="Results").scroll_into_view_if_needed()
    shot(page, "scanner")

    nav(page, server, "Reports")
    page.get_by_role("button", name="Download run report (HTML, all plots)").wait_for()
    shot(page, "reports")


def test_scanner_refuses_an_empty_upload_and_results_follow_the_newest_scan(server, browser_page):
    """An empty file is refused with one line at upload, before anything is queued; a second scan, once it
    finishes, replaces the first in the Results box without a click (its scanner is cached by then)."""
    from playwright.sync_api import expect
    page = browser_page
    goto(page, server, "scanner")
    page.get_by_text("an uploaded catalog file").click()
    wait_idle(page)
    empty = SERVER_HOME["path"] / "empty.csv"
    empty.write_bytes(b"")
    upload(page, str(empty))
    expect(page.get_by_text("empty.csv: file is empty")).to_be_visible()
    expect(page.get_by_role("button", name="Start scan")).to_be_disabled()
    before = page.get_by_role("combobox", name="Scan", exact=True).input_value()
    assert before.startswith("catalog.csv · "), before
    upload(page, catalog_file(SERVER_HOME["path"], "second.csv"))  # replaces the refused file
    expect(page.get_by_text("empty.csv: file is empty")).to_have_count(0)
    smallest_scan_settings(page)
    second = start_scan(page)
    expect(page.get_by_role("combobox", name="Scan", exact=True)).to_have_value(re.compile(r"^second\.csv · "),
                                                                     timeout=120_000)
    expect(page.get_by_text(f"Scan id {second}", exact=False)).to_be_visible()


def test_compare_shows_the_attackers_rank_beyond_the_top_10(server, browser_page):
    """A run that stored its lists as core.attack.experiment does (tests/test_pages.seed_ranked_run): for user 1 the
    attacker's item ranks 12th with the trigger, shown after the top 10 with its real rank."""
    from playwright.sync_api import expect

    from core.runs.store import Store
    from tests.test_pages import seed_ranked_run
    run_id = seed_ranked_run(Store(SERVER_HOME["path"] / "badrec.duckdb"), "attack-ranked-browser")
    page = browser_page
    goto(page, server, f"compare?run={run_id}")
    expect(page.get_by_role("combobox", name=re.compile("Test user"))).to_have_value(re.compile(r"^user 1 · "))
    expect(page.get_by_text("Attacker's item at rank 12 (below the top 10, shown after it): Movie 9 5v")) \
        .to_be_visible()


def upload(page, path: str) -> None:
    """Choose a file in the Scanner's uploader and wait until the page has checked it."""
    from playwright.sync_api import expect
    dropzone = page.get_by_test_id("stFileUploaderDropzoneInput")
    expect(dropzone).to_be_enabled()  # enabled once the rerun for the source choice is drawn
    dropzone.set_input_files(path)
    expect(page.get_by_text(Path(path).name, exact=True).first).to_be_visible()
    wait_idle(page)


def smallest_scan_settings(page) -> None:
    """The Scanner form's smallest training (as tests/test_pages.tiny_scan_settings): mini, no rounds, one epoch,
    2 cross-fitting folds."""
    choose(page, "Scanner model", "mini")
    set_number(page, "Adversarial rounds", 0)
    page.get_by_text("Advanced (size of the scanner's training)").click()
    set_number(page, "Epochs", 1)
    set_number(page, "Synthetic triggers", 12)
    set_number(page, "Max training titles", 50)
    set_number(page, "Cross-fitting folds", 2)


def start_scan(page) -> str:
    """Click Start scan, wait for the job to finish; returns its id (the scan's id)."""
    page.get_by_role("button", name="Start scan").click()
    outcome = page.get_by_text(re.compile(r"Queued scan-")).or_(page.get_by_test_id("stAlertContentError"))
    outcome.first.wait_for()
    text = outcome.first.inner_text()
    assert text.startswith("Queued scan-"), text
    job = text.removeprefix("Queued ").rstrip(".")
    page.get_by_text(f"{job} finished").first.wait_for(timeout=600_000)
    wait_idle(page)
    return job


# The smallest real attack (smoke model, under a minute here), 20 candidates so ranks beyond 10 exist; one full
# epoch keeps each training stage on screen for several of the job panel's 2 s polls.
ATTACK = {"ratio": 0.3, "epochs": 1.0, "lr": 0.01, "users": 5, "windows": 1, "candidates": 20, "history": 5}


def set_number(page, label: str, value: float) -> None:
    """Type into a number input and leave it with Tab (Enter would submit a form); waits until a rerun's
    stale copy of the widget has gone, so exactly one input carries the label."""
    from playwright.sync_api import expect

    box = page.get_by_label(label, exact=True)
    expect(box).to_have_count(1, timeout=60_000)
    box.fill(str(value))
    box.press("Tab")
    wait_idle(page)


def choose(page, label: str, option: str) -> None:
    """Pick an option of a selectbox, once a rerun's stale copy of it has gone (as `set_number`)."""
    from playwright.sync_api import expect

    box = page.get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True))
    expect(box).to_have_count(1, timeout=60_000)
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)
