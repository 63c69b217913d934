"""The dashboard end to end, in real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright:
frames of a synthetic coil are posted to the API while the page is open; the map and the table must follow,
a class filter must filter, and a defect must open with its crop."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from steelscan.service.app import create_app
from steelscan.service.settings import Settings
from tests.service_helpers import COIL_BODY, coil_frames, served, tiny_artifact

CHROMIUM = Path(os.environ.get("STEELSCAN_CHROMIUM", "/usr/bin/chromium"))
# As root in a closed network: no sandbox, and no background calls home that the network would refuse.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# Pages open with bypass_csp: Playwright runs wait_for_function strings through eval, which the dashboard's
# Content-Security-Policy forbids (tests/test_service_browser_csp.py checks the page works under it).


def launch(p):
    return p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (.ci/run does) or set STEELSCAN_CHROMIUM")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency: pip install -e .[test]")
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def post(c: httpx.Client, frames, ks):
    for k in ks:
        r = c.post("/v1/frames", data={"coil_id": "E2E", "frame": str(k)},
                   files={"image": ("f.png", frames[k].read_bytes(), "image/png")})
        assert r.status_code == 200, r.text


def test_dashboard_follows_frames_filters_and_opens_a_defect(browser, tmp_path):
    frames = coil_frames(tmp_path / "coil", n=4)
    app = create_app(Settings(artifact=tiny_artifact(tmp_path), db=str(tmp_path / "r.db"), data_dir=tmp_path / "d",
                              threads=1))
    with served(app) as url, httpx.Client(base_url=url, timeout=60) as api:
        assert api.post("/v1/coils", json={"coil_id": "E2E", **COIL_BODY}).status_code == 201
        post(api, frames, [0, 1])
        page = browser.new_page(viewport={"width": 1500, "height": 1100}, bypass_csp=True)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.locator('#coil-list tr[data-coil="E2E"]').click()
        page.wait_for_function("Number(document.querySelector('#coil-map').dataset.defects) > 0")
        page.wait_for_selector("#defect-table tbody tr")
        before = int(page.locator("#coil-map").get_attribute("data-defects"))
        assert page.locator("#coil-facts").inner_text().startswith("open · 2 frames")

        # frames arrive while the page is open: the map, facts and table follow without a reload
        post(api, frames, [2, 3])
        page.wait_for_function("document.querySelector('#coil-facts').textContent.startsWith('open · 4 frames')")
        detail = api.get("/v1/coils/E2E").json()
        page.wait_for_function(f"document.querySelector('#coil-map').dataset.defects === '{detail['n_defects']}'")
        assert detail["n_defects"] != before
        assert page.locator("#counts tbody tr").count() == len(detail["counts_by_class"])
        assert "provisional" in page.locator("#grade-badge").inner_text()

        # filter by the rarest class: only its rows remain, as many as the API counts
        cls, n = min(detail["counts_by_class"].items(), key=lambda kv: kv[1])
        page.select_option("#class-filter", cls)
        rows = page.locator("#defect-table tbody tr")
        page.wait_for_function(
            f"[...document.querySelectorAll('#defect-table tbody tr')].every(r => r.dataset.class === '{cls}')"
            f" && document.querySelectorAll('#defect-table tbody tr').length === {min(n, 500)}")
        assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.class)")) == {cls}

        # open a defect: its fields and its crop (a real PNG from the API) show
        first = rows.first
        defect_id = first.get_attribute("data-id")
        first.click()
        page.wait_for_selector("#defect-detail:not([hidden])")
        assert page.locator("#detail-title").inner_text() == f"Defect #{defect_id}, class {cls}"
        page.wait_for_function("document.querySelector('#defect-crop').naturalWidth > 0")
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000

        # closing the coil turns the provisional grade final
        api.post("/v1/coils/E2E/close")
        page.wait_for_function("!document.querySelector('#grade-badge').textContent.includes('provisional')")
        assert errors == []


def test_dashboard_with_a_detector_station_shows_its_class_names(browser, tmp_path):
    from tests.detector_helpers import CLASSES, tiny_detector

    frames = coil_frames(tmp_path / "coil", n=2)
    app = create_app(Settings(artifact=str(tiny_detector(tmp_path)), db=str(tmp_path / "r.db"),
                              data_dir=tmp_path / "d", threads=1))
    with served(app) as url, httpx.Client(base_url=url, timeout=120) as api:
        assert api.post("/v1/coils", json={"coil_id": "DET", **COIL_BODY}).status_code == 201
        for k in (0, 1):
            r = api.post("/v1/frames", data={"coil_id": "DET", "frame": str(k)},
                         files={"image": ("f.png", frames[k].read_bytes(), "image/png")})
            assert r.status_code == 200, r.text
        detail = api.get("/v1/coils/DET").json()
        assert detail["n_defects"] > 0 and set(detail["counts_by_class"]) <= set(CLASSES)
        page = browser.new_page(viewport={"width": 1500, "height": 1100}, bypass_csp=True)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.locator('#coil-list tr[data-coil="DET"]').click()
        page.wait_for_function(f"document.querySelector('#coil-map').dataset.defects === '{detail['n_defects']}'")
        shown = page.locator("#counts tbody").inner_text()
        assert all(name in shown for name in detail["counts_by_class"])  # the model's names, not "class N"
        options = page.locator("#class-filter option").evaluate_all("os => os.map(o => o.value)")
        assert set(detail["counts_by_class"]) <= set(options)
        page.locator("#defect-table tbody tr").first.click()
        page.wait_for_function("document.querySelector('#defect-crop').naturalWidth > 0")
        assert errors == []
