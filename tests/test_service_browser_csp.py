"""The dashboard, its coil report and /docs under the service's Content-Security-Policy, in real headless Chromium:
nothing the pages need is refused (a refusal is a console error naming the policy), and /docs loads Swagger UI
from the package alone. (Only waits that run no page-world JavaScript: the policy forbids eval.)"""

from __future__ import annotations

import httpx

from steelscan.service.app import create_app
from steelscan.service.settings import Settings
from tests.service_helpers import COIL_BODY, coil_frames, served, tiny_artifact
from tests.test_dashboard_e2e import browser  # noqa: F401 - the shared Chromium fixture (pytest finds it here)


def watch(page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
    return problems


def test_pages_work_under_the_content_security_policy(browser, tmp_path):  # noqa: F811
    frames = coil_frames(tmp_path / "coil", n=2)
    app = create_app(Settings(artifact=tiny_artifact(tmp_path), db=str(tmp_path / "r.db"), data_dir=tmp_path / "d",
                              threads=1, host="127.0.0.1"))
    with served(app) as url, httpx.Client(base_url=url, timeout=60) as api:
        assert api.post("/v1/coils", json={"coil_id": "CSP", **COIL_BODY}).status_code == 201
        for k in (0, 1):
            r = api.post("/v1/frames", data={"coil_id": "CSP", "frame": str(k)},
                         files={"image": ("f.png", frames[k].read_bytes(), "image/png")})
            assert r.status_code == 200, r.text
        assert "frame-ancestors 'none'" in api.get("/").headers["content-security-policy"]

        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        problems = watch(page)
        page.goto(url + "/")
        page.locator('#coil-list tr[data-coil="CSP"]').click()
        page.wait_for_selector("#defect-table tbody tr")
        page.locator("#defect-table tbody tr").first.click()
        page.wait_for_selector("#defect-detail:not([hidden])")
        page.wait_for_selector("#defect-crop[src^='blob:']")
        with page.expect_popup() as opened:  # the report opens as a blob page, under the dashboard's policy
            page.locator("#report-link").click()
        report = opened.value
        report_problems = watch(report)
        report.wait_for_load_state()
        assert "Coil CSP" in report.content()
        assert report.locator("img").count() > 0
        page.wait_for_timeout(500)
        assert problems == [] and report_problems == [], problems + report_problems

        docs = browser.new_page()
        docs_problems = watch(docs)
        requested: list[str] = []
        docs.on("request", lambda r: requested.append(r.url))
        docs.goto(url + "/docs")
        docs.wait_for_selector(".swagger-ui .opblock", timeout=30_000)  # the operations rendered
        assert docs.locator(".swagger-ui .opblock").count() >= 8
        assert docs_problems == [], docs_problems
        assert requested and all(u.startswith(url) for u in requested), requested  # nothing from elsewhere
