"""The studio as a curator sees it: `glowai labeler` served for real, driven by headless chromium.
Screenshots of Review and Error analysis go to out/test-artifacts/; the exported HTML report is
opened in chromium too."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT, start_server

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing on CI: .ci/run must install it (apt-get install chromium)")
    pytest.skip("no chromium here (apt-get install chromium)", allow_module_level=True)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
WAIT_MS = 120_000


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL: Streamlit can take its time to close while a browser is connected."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def studio_url(tiny_dataset, acne_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("studio") / "ds"
    shutil.copytree(tiny_dataset, root)
    process, url, log = start_server(["labeler", "--data", str(root), "--eval", str(acne_folder)], "_stcore/health",
                                     tmp_path_factory.mktemp("studio-log") / "studio.log", "studio")
    yield url, root
    stop(process)
    log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 2600})  # Streamlit scrolls inside: a tall window shows it all
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


def test_review_page(page, studio_url, artifacts):
    url, _ = studio_url
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("In focus:").wait_for()
    page.locator("img").nth(3).wait_for()  # the grid pictures arrived
    assert page.get_by_role("button", name="Accept").count() >= 1
    page.screenshot(path=str(artifacts / "studio-review.png"), full_page=True)
    first = page.get_by_text("In focus:").inner_text()
    page.get_by_role("heading", name="Review").click()  # focus the page, not a text box
    page.keyboard.press("a")  # the Accept shortcut: records a decision and moves to the next sample
    page.get_by_text("accepted 1").first.wait_for()
    # the rerun can show the new count a moment before it replaces the focus caption: wait for it
    expect(page.get_by_text("In focus:")).not_to_have_text(first, timeout=15_000)


def test_error_analysis_page_and_html_report(page, studio_url, artifacts):
    url, root = studio_url
    page.goto(url + "errors", wait_until="domcontentloaded")
    page.get_by_role("button", name="Run the analysis (lesions, glowai-unet-small)", exact=True).click()
    page.get_by_text("lesion recall").wait_for()
    page.get_by_text("Failure gallery").wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts / "studio-error-analysis.png"), full_page=True)

    page.goto(url + "export", wait_until="domcontentloaded")
    page.get_by_role("button", name="Build the report").click()
    page.get_by_text("wrote reports/").wait_for()
    report = sorted((root / "reports").glob("report-*.html"))[-1]
    page.goto(report.as_uri(), wait_until="load")
    page.locator(".main-svg").first.wait_for()  # plotly drew the charts from the inlined library
    assert page.title() == "GlowAI studio report"
    assert page.get_by_text("Error analysis: glowai-unet-small__acne04-like").count() == 1
    page.screenshot(path=str(artifacts / "studio-report.png"), full_page=True)


def test_a_studio_killed_mid_request_loses_no_decision(page, tiny_dataset, tmp_path):
    """Decisions made in the page, then the server SIGKILLed while it serves: on restart the
    database is intact and every decision is there."""
    import signal
    import sqlite3

    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset, root)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "apps.cli", "labeler", "--data", str(root), "--port", str(port)]
    url = f"http://127.0.0.1:{port}/"

    def serve() -> subprocess.Popen:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(180):
            try:
                urllib.request.urlopen(url + "_stcore/health", timeout=2)
                return process
            except OSError:
                time.sleep(0.5)
        process.kill()
        pytest.fail("the studio did not start")

    server = serve()
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("In focus:").wait_for()
    page.locator("img").nth(3).wait_for()  # the page has finished its first run
    page.get_by_role("heading", name="Review").click()
    for count in (1, 2, 3):
        page.keyboard.press("a")
        page.get_by_text(f"accepted {count}").first.wait_for()
    page.goto(url + "stats", wait_until="domcontentloaded")  # a request in flight...
    os.kill(server.pid, signal.SIGKILL)  # ...when the server dies
    server.wait(timeout=30)
    with sqlite3.connect(root / "curation.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM decisions WHERE status = 'accepted'").fetchone()[0] == 3
    server = serve()
    try:
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_text("accepted 3").first.wait_for()
    finally:
        stop(server)


def lesion_count(page) -> int:
    return int(page.get_by_text(re.compile(r"^\d+ lesion points? ·")).inner_text().split()[0])


def label_photo(page, name: str, clicks: list[tuple[int, int]], grades: dict[str, str]) -> None:
    """On the open photo: click each point on the picture, choose grades (condition -> word)."""
    page.get_by_text(re.compile(rf"^{re.escape(name)} \(\d+ of \d+\)")).wait_for()
    page.get_by_text("Model's error on this photo").wait_for()  # the model's suggestions are in
    before = lesion_count(page)
    picture = page.frame_locator("iframe").first.locator("img")
    for k, (x, y) in enumerate(clicks, 1):
        picture.click(position={"x": x, "y": y})
        page.get_by_text(re.compile(rf"^{before + k} lesion points? ·")).wait_for()
    for condition, word in grades.items():
        group = page.get_by_role("radiogroup", name=re.compile(rf"^{condition}\b", re.IGNORECASE))
        group.get_by_role("radio", name=word, exact=True).click()
        expect(group.get_by_role("radio", name=word, exact=True)).to_be_checked()


def test_two_curators_annotate_photos_in_the_browser(browser, tmp_path, artifacts):
    """Alice labels two photos by clicking and choosing grades; a reload finds them; Bob labels the
    same photos differently and the stats page shows their kappa."""
    import sqlite3

    from core.curation.store import Store, default_url

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("portrait-001.jpg", "portrait-006.jpg"):
        shutil.copy(ROOT / "data" / "examples" / name, photos / name)
    process, url, log = start_server(["labeler", "--photos", str(photos)], "_stcore/health", tmp_path / "studio.log",
                                     "studio")
    context = browser.new_context(viewport={"width": 1500, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(url + "?curator=alice", wait_until="domcontentloaded")
        label_photo(page, "portrait-001.jpg", [(300, 350), (420, 380)], {"acne": "moderate", "redness": "mild"})
        alice_first = lesion_count(page)
        page.screenshot(path=str(artifacts / "studio-annotate.png"), full_page=True)
        page.get_by_role("button", name="Save and next").click()
        label_photo(page, "portrait-006.jpg", [(380, 300)], {"acne": "mild", "redness": "none"})
        alice_second = lesion_count(page)
        page.get_by_role("button", name="Save", exact=True).click()
        page.get_by_text("2 of 2 photos labelled by alice").wait_for()

        page.reload(wait_until="domcontentloaded")  # a new session: what is shown comes from the store
        page.get_by_text("2 of 2 photos labelled by alice").wait_for()
        page.get_by_text(f"{alice_first} lesion point").first.wait_for()
        page.get_by_text("· saved").wait_for()

        page.goto(url + "?curator=bob", wait_until="domcontentloaded")
        page.get_by_text("0 of 2 photos labelled by bob").wait_for()
        label_photo(page, "portrait-001.jpg", [(300, 350)], {"acne": "mild", "redness": "mild"})
        page.get_by_role("button", name="Save and next").click()
        label_photo(page, "portrait-006.jpg", [], {"acne": "mild", "redness": "mild"})
        page.get_by_role("button", name="Save", exact=True).click()
        page.get_by_text("2 of 2 photos labelled by bob").wait_for()

        page.goto(url + "stats?curator=bob", wait_until="domcontentloaded")
        page.get_by_text("Agreement between curators").wait_for()
        agreement = page.locator("table").filter(has_text="alice / bob")  # the grid's accessible table
        agreement.wait_for(state="attached")
        assert "kappa acne" in agreement.inner_text() and "point F1" in agreement.inner_text()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(artifacts / "studio-agreement.png"), full_page=True)
    finally:
        context.close()
        stop(process)
        log.close()
    with sqlite3.connect(photos / "curation.db") as db:
        assert db.execute("SELECT count(*) FROM audit WHERE action = 'photo_label'").fetchone()[0] == 4
    with Store(default_url(photos), photos) as store:
        labels = store.photo_labels().set_index(["curator", "photo"])
    chosen = {who: [(labels.at[(who, p), "grades"].get("acne"), labels.at[(who, p), "grades"].get("redness"))
                    for p in ("portrait-001.jpg", "portrait-006.jpg")] for who in ("alice", "bob")}
    assert chosen == {"alice": [(2, 1), (1, 0)], "bob": [(1, 1), (1, 1)]}  # a click on the chosen grade keeps it
    assert len(labels.at[("alice", "portrait-001.jpg"), "points"]) == alice_first
    assert len(labels.at[("alice", "portrait-006.jpg"), "points"]) == alice_second
