"""The README's dashboard screenshot: the shipped segmenter on a SYNTHETIC coil, posted frame by frame.

    .venv/bin/python scripts/dashboard_screenshot.py [--frames 60] [--out docs/dashboard.png]

Starts the service in-process on loopback, posts the frames of `steelscan synth coil` (the demo's settings)
over HTTP, opens the dashboard in headless Chromium, selects the largest defect and saves a screenshot.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from steelscan.deploy.export import artifact_for_frames  # noqa: E402
from steelscan.service.app import create_app  # noqa: E402
from steelscan.service.settings import Settings  # noqa: E402
from tests.service_helpers import served  # noqa: E402
from tests.test_dashboard_e2e import CHROMIUM_ARGS, CHROMIUM  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard.png")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="steelscan-shot-"))
    subprocess.run([str(REPO / ".venv/bin/steelscan"), "synth", "coil", str(work / "coil"), "--n", str(args.frames),
                    "--frame", "1600x256", "--overlap", "16", "--strip-width-mm", "2200", "--seed", "7"], check=True)
    m = yaml.safe_load((work / "coil" / "manifest.yaml").read_text())
    body = {"coil_id": m["coil_id"], "frame_width": m["frame_width_px"], "frame_height": m["frame_height_px"],
            **{k: m[k] for k in ("mm_per_px_across", "mm_per_px_along", "strip_width_mm", "frame_overlap_px",
                                 "strip_edges_px")}}
    app = create_app(Settings(artifact=artifact_for_frames("severstal", work, (m["frame_height_px"], m["frame_width_px"])), db=str(work / "r.db"),
                              data_dir=work / "data"))
    with served(app) as url, httpx.Client(base_url=url, timeout=120) as api, sync_playwright() as p:
        api.post("/v1/coils", json=body).raise_for_status()
        for k, f in enumerate(sorted((work / "coil" / "frames").glob("*.png"))):
            api.post("/v1/frames", data={"coil_id": body["coil_id"], "frame": str(k)},
                     files={"image": (f.name, f.read_bytes(), "image/png")}).raise_for_status()
        defects = api.get(f"/v1/coils/{body['coil_id']}/defects", params={"limit": 1000}).json()["defects"]
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(url + "/")
        page.wait_for_selector("#defect-table tbody tr")
        if defects:
            big = max(defects, key=lambda d: d["area_mm2"])
            page.locator(f'#defect-table tr[data-id="{big["id"]}"]').click()
            page.wait_for_function("document.querySelector('#defect-crop').naturalWidth > 0")
        page.wait_for_timeout(1500)  # one more poll, so the map shows the selection
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=False)
        browser.close()
    print(f"{len(defects)} defects on {args.frames} frames; screenshot {args.out}")


if __name__ == "__main__":
    main()
