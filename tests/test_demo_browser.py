"""The demo as a visitor sees it: headless Debian chromium drives the launched server.

Screenshots go to out/test-artifacts/ (GLOWAI_ARTIFACTS overrides). Needs /usr/bin/chromium
(`apt-get install chromium`; .ci/run installs it); without it these tests skip, except on CI
where they fail.
"""

from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pytest

from tests.conftest import EXAMPLES

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing on CI: .ci/run must install it (apt-get install chromium)")
    pytest.skip("no chromium here (apt-get install chromium)", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
WAIT_MS = 90_000


def face_video(path, seconds: float = 4.0, fps: int = 10) -> None:
    """A Y4M clip of a CC0 portrait drifting slowly: chromium's fake camera plays it in a loop."""
    face = cv2.cvtColor(cv2.imread(str(EXAMPLES / "portrait-001.jpg")), cv2.COLOR_BGR2RGB)
    face = cv2.resize(face, (480, 480))
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W640 H480 F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(int(seconds * fps)):
            frame = np.full((480, 640, 3), 40, np.uint8)
            shift = int(40 + 20 * np.sin(i / 6))
            frame[:, shift:shift + 480] = face
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    video = tmp_path_factory.mktemp("camera") / "face.y4m"
    face_video(video)
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, f"--use-file-for-fake-video-capture={video}"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, demo_server):
    url, _, _ = demo_server
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Drop Image Here").first.wait_for()
    yield page
    context.close()


def upload(panel, path) -> None:
    panel.locator("input[type=file]").first.set_input_files(str(path))


def test_analyze_shows_overlay_and_report(page, artifacts):
    panel = page.locator("#tab-analyze")
    upload(panel, EXAMPLES / "portrait-057.jpg")
    panel.get_by_role("button", name="Analyze", exact=True).click()
    page.get_by_text("Analysed in").wait_for()
    # the mask overlay (a picture with its legend strip), the zone map and the report card are on the page
    masks = panel.locator(".block", has_text="Where each condition is")
    masks.locator("img").first.wait_for()
    assert masks.locator("img").first.evaluate("img => img.naturalWidth") > 100
    for title in ("Acne", "Redness", "Texture", "Dryness"):  # the conditions it can show, each with a switch
        assert panel.get_by_label(title, exact=True).count() >= 1
    panel.locator(".block", has_text="Report card").locator("img").first.wait_for()
    # the severity chart draws its bars, one trace per condition (plotly renders after the values arrive)
    bars = panel.locator("[data-testid=plotly] g.trace.bars")
    bars.first.wait_for(state="attached")
    assert bars.count() == 4
    assert panel.get_by_text("not a medical device").count() >= 1
    page.screenshot(path=str(artifacts / "demo-analyze.png"), full_page=True)


def test_retouch_and_makeup(page, artifacts):
    page.get_by_role("tab", name="Retouch & makeup").click()
    panel = page.locator("#tab-filters")
    upload(panel, EXAMPLES / "portrait-006.jpg")
    panel.get_by_role("button", name="Apply", exact=True).click()
    status = panel.get_by_text("Applied:")
    status.wait_for()
    assert "makeup 'natural'" in status.inner_text()
    slider = panel.locator(".block", has_text="Before / after")
    slider.locator("img").nth(1).wait_for()
    assert slider.locator("img").count() >= 2
    panel.get_by_text("Reference photo", exact=True).click()  # no reference yet: the rest applies, and it says why
    page.get_by_text("Makeup skipped: upload a reference photo with makeup").first.wait_for()
    assert slider.locator("img").count() >= 2
    page.screenshot(path=str(artifacts / "demo-retouch-makeup.png"), full_page=True)


def test_live_filter_on_fake_camera(page, artifacts):
    page.get_by_role("tab", name="Live").click()
    panel = page.locator("#tab-live")
    panel.get_by_text("Click to Access Webcam").click()
    panel.get_by_role("button", name="capture photo").click()  # the record button of a streaming webcam
    page.get_by_text("face tracked").wait_for()
    assert panel.locator(".block", has_text="Filtered").locator("img").count() >= 1
    rate = 0.0
    for _ in range(60):  # the first frame has no rate yet; a few more do
        status = panel.get_by_text("frames/s").inner_text()
        rate = float(status.split("frames/s")[0].strip().split()[-1])
        if rate > 0 and "face tracked" in status:
            break
        page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "demo-live.png"), full_page=True)
    assert rate > 0


def test_bad_files_get_a_message_and_the_page_keeps_working(page, artifacts, tmp_path):
    panel = page.locator("#tab-analyze")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    upload(panel, broken)
    panel.get_by_role("button", name="Analyze", exact=True).click()
    page.get_by_text("use a JPEG, PNG or WebP photo").first.wait_for()
    page.screenshot(path=str(artifacts / "demo-broken-file.png"))
    wall = tmp_path / "wall.png"
    cv2.imwrite(str(wall), np.full((300, 400, 3), 170, np.uint8))
    upload(panel, wall)
    panel.get_by_role("button", name="Analyze", exact=True).click()
    page.get_by_text("No face found in this photo").first.wait_for()
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(b"\xff\xd8" + bytes(31 * 1024 * 1024))
    upload(panel, huge)
    page.get_by_text("maximum allowed size").first.wait_for()
    page.screenshot(path=str(artifacts / "demo-oversized-file.png"))
    upload(panel, EXAMPLES / "portrait-001.jpg")  # and the same page still analyses a good photo
    panel.get_by_role("button", name="Analyze", exact=True).click()
    page.get_by_text("Analysed in").wait_for()
