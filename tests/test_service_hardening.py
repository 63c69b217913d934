"""What an attacker and unlucky clients found in the service (issue 14), each with the reproduction: frames after a
close, huge frame numbers, unbounded metrics, cross-site requests and DNS rebinding, the losing client's image,
integer overflow, oversized coils, slow headers, the token read after the body, Pillow's cap, JPEGs that end
early, booleans as numbers and an OpenAPI description that did not match the checks."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from steelscan.service.app import create_app
from steelscan.service.limits import header_timeout_protocol
from steelscan.service.settings import Limits, Settings
from steelscan.service.station import FrameJob
from steelscan.store import Store, frames_table
from tests.service_helpers import COIL_BODY, FRAME_H, FRAME_W, coil_frames, png_bytes, served, tiny_artifact

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOCAL = "http://127.0.0.1:8000"  # the Host a loopback station answers to (TestClient's own is "testserver")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening")
    frames = coil_frames(root / "coil", n=4)
    return {"artifact": tiny_artifact(root), "frames": frames, "pngs": [f.read_bytes() for f in frames]}


def settings(tmp_path, assets, db: str | None = None, **kw) -> Settings:
    kw.setdefault("host", "127.0.0.1")
    return Settings(artifact=assets["artifact"], db=db or str(tmp_path / "records.db"), data_dir=tmp_path / "data",
                    threads=1, **kw)


def client(tmp_path, assets, **kw) -> TestClient:
    return TestClient(create_app(settings(tmp_path, assets, **kw)), base_url=LOCAL)


def frame_form(coil: str, k: int, data: bytes) -> dict:
    return {"data": {"coil_id": coil, "frame": str(k)}, "files": {"image": ("f.png", data, "image/png")}}


def png_declaring(width: int, height: int) -> bytes:
    data = bytearray(png_bytes(np.zeros((8, 8), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# High: frames after a close -------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_frames_racing_a_close_are_refused_or_graded(tmp_path, assets, backend, request):
    """4 clients post frames while a fifth closes the coil (allow_missing): every frame is either committed before
    the close, and graded, or refused with 409; none is committed after the close answered."""
    db = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    app = create_app(settings(tmp_path, assets, db=db))
    station = app.state.station
    work = station.batcher.work

    def slow(jobs):  # frames queue up behind the inference thread, as they did under real load
        time.sleep(0.15)
        return work(jobs)

    station.batcher.work = slow
    answers, errors = [], []
    with served(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert c.post("/v1/coils", json={"coil_id": "R", **COIL_BODY}).status_code == 201
        assert c.post("/v1/frames", **frame_form("R", 0, assets["pngs"][0])).status_code == 200

        def poster(i: int) -> None:
            try:
                with httpx.Client(base_url=url, timeout=60) as own:
                    for k in range(1 + i, 40, 4):
                        r = own.post("/v1/frames", **frame_form("R", k, assets["pngs"][k % 4]))
                        answers.append((k, r.status_code, r.json()))
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=poster, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        r = c.post("/v1/coils/R/close", params={"allow_missing": "true"})
        closed_at = datetime.now(UTC)
        assert r.status_code == 200, r.text
        grade = r.json()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert {s for _, s, _ in answers} <= {200, 409}, answers
        refused = [k for k, s, _ in answers if s == 409]
        assert refused and all("closed" in body["error"] for _, s, body in answers if s == 409)
        committed = {0} | {k for k, s, body in answers if s == 200 and body["committed"]}
        assert len(committed) > 1
        detail = c.get("/v1/coils/R").json()
        assert detail["status"] == "closed" and detail["n_frames"] == len(committed)
        # the grade is the grade of exactly the stored frames
        coil = station.coil("R")
        assert station._grade(coil, station.defects("R")) == grade == detail["grade"]
    store = Store(db or str(tmp_path / "records.db"))
    try:
        assert store.frames_done("R") == committed
        with store.engine.connect() as conn:
            stamps = list(conn.scalars(select(frames_table.c.created_at).where(frames_table.c.coil_id == "R")))
    finally:
        store.close()
    last = max(s if s.tzinfo else s.replace(tzinfo=UTC) for s in stamps)
    assert last <= closed_at  # no frame committed after the close answered


# Medium: huge frame numbers, metrics, cross-site requests, the stored image --------------------------------------
def test_frame_numbers_are_bounded_and_gaps_are_counted_not_listed(tmp_path, assets):
    with client(tmp_path, assets) as c:
        c.post("/v1/coils", json={"coil_id": "G", **COIL_BODY})
        r = c.post("/v1/frames", **frame_form("G", 9_999_999, assets["pngs"][0]))
        assert r.status_code == 422 and "at most 1000 frames" in r.json()["error"], r.text
        for k in (0, 1000):
            assert c.post("/v1/frames", **frame_form("G", k, assets["pngs"][k % 4])).status_code == 200
        assert c.post("/v1/frames", **frame_form("G", 2001, assets["pngs"][0])).status_code == 422
        station = c.app.state.station
        reads = []
        real = station.store.pieces
        station.store.pieces = lambda *a, **kw: reads.append(a) or real(*a, **kw)
        t0 = time.perf_counter()
        detail = c.get("/v1/coils/G").json()
        assert time.perf_counter() - t0 < 2
        assert detail["n_missing_frames"] == 999 and detail["missing_frames"] == list(range(1, 101))
        assert len(reads) == 1
        c.get("/v1/coils/G")
        c.get("/v1/coils/G/defects")
        assert len(reads) == 1  # merged defects are cached per coil until a frame commits
        assert c.post("/v1/frames", **frame_form("G", 1, assets["pngs"][1])).status_code == 200
        assert c.get("/v1/coils/G").json()["n_missing_frames"] == 998 and len(reads) == 2


def test_metrics_labels_are_bounded_and_metrics_need_the_token(tmp_path, assets):
    import asyncio

    with client(tmp_path, assets, token=TOKEN) as c:
        for i in range(30):
            c.request(f"FOO{i}", f"/made-up/{i}")
            c.request(f"BAR{i}", "/healthz")
        assert c.get("/metrics").status_code == 401
        off_loop = []
        metrics = c.app.state.metrics
        real = metrics.render

        def render():
            try:
                asyncio.get_running_loop()
                off_loop.append(False)
            except RuntimeError:
                off_loop.append(True)
            return real()

        metrics.render = render
        text = c.get("/metrics", headers=AUTH).text
        assert off_loop == [True]
    methods = {line.split('method="')[1].split('"')[0] for line in text.splitlines() if 'method="' in line}
    routes = {line.split('route="')[1].split('"')[0] for line in text.splitlines() if 'route="' in line}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods
    assert "FOO0" not in text and len(routes) <= 3, routes
    with client(tmp_path, assets, token=TOKEN, metrics_public=True) as c:
        assert c.get("/metrics").status_code == 200


def test_host_origin_checks_and_security_headers(tmp_path, assets):
    with client(tmp_path, assets, allowed_hosts=("station.plant",)) as c:
        for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "station.plant", "station.plant:8000"):
            assert c.get("/healthz", headers={"Host": host}).status_code == 200, host
        for host in ("attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example"):
            r = c.get("/v1/coils", headers={"Host": host})
            assert r.status_code == 400 and "Host" in r.json()["error"], host
        evil = {"Origin": "https://evil.example"}
        r = c.post("/v1/coils", json={"coil_id": "X", **COIL_BODY}, headers=evil)
        assert r.status_code == 403 and "Origin" in r.json()["error"]
        r = c.post("/v1/coils", content=b'{"coil_id": "X"}', headers={**evil, "Content-Type": "text/plain"})
        assert r.status_code == 403
        assert c.post("/v1/coils", json={"coil_id": "X"}, headers={"Origin": "null"}).status_code == 403
        assert c.post("/v1/coils", json={"coil_id": "X", **COIL_BODY}, headers={"Origin": LOCAL}).status_code == 201
        assert c.post("/v1/frames", **frame_form("X", 0, assets["pngs"][0]), headers=evil).status_code == 403
        assert c.post("/v1/coils/X/close", headers=evil).status_code == 403
        assert c.get("/v1/coils/X").json()["n_frames"] == 0  # nothing the foreign page sent was taken
        assert c.post("/v1/frames", **frame_form("X", 0, assets["pngs"][0]),
                      headers={"Origin": "http://station.plant:8000", "Host": "station.plant:8000"}).status_code == 200
        for path in ("/", "/healthz", "/v1/coils", "/v1/coils/nope", "/docs", "/static/app.js", "/nowhere"):
            h = c.get(path).headers
            assert h["x-content-type-options"] == "nosniff", path
            assert "frame-ancestors 'none'" in h["content-security-policy"], path
            assert "script-src 'self'" in h["content-security-policy"] and h["x-frame-options"] == "DENY", path
    # a wildcard bind with a token: names are the operator's (or a proxy's) to choose
    with client(tmp_path, assets, host="0.0.0.0", token=TOKEN) as c:
        assert c.get("/healthz", headers={"Host": "station-7.plant.example"}).status_code == 200


def test_the_stored_image_is_the_winning_commits(tmp_path, assets):
    """Two clients post different images as the same frame: the image on disk is the one whose commit won."""
    app = create_app(settings(tmp_path, assets))
    station = app.state.station
    with TestClient(app, base_url=LOCAL) as c:
        c.post("/v1/coils", json={"coil_id": "W", **COIL_BODY})
        coil = station.coil("W")
        a, b = (np.asarray(Image.open(io.BytesIO(p))) for p in assets["pngs"][:2])
        first, second = station._inspect_batch([FrameJob(coil, 0, a), FrameJob(coil, 0, b)])
        assert first.committed and not second.committed
        assert np.array_equal(station.read_frame("W", 0), a)
        folder = tmp_path / "data" / "frames" / "W"
        assert sorted(p.name for p in folder.iterdir()) == ["000000.png"]  # the loser's file is gone
        # killed between the commit and the rename: the committed frame's file is found under its temp name
        token = station.store.frame_info("W", 0)["image"]
        (folder / "000000.png").rename(folder / f".000000.png.{token}.tmp")
        assert np.array_equal(station.read_frame("W", 0), a) and (folder / "000000.png").is_file()
        # ten clients, two images, over HTTP: the winner's image is stored
        results = []

        def post(i: int) -> None:
            r = c.post("/v1/frames", **frame_form("W", 1, assets["pngs"][2 + i % 2]))
            results.append((i % 2, r.json()))

        threads = [threading.Thread(target=post, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        winners = [i for i, body in results if body["committed"]]
        assert len(winners) == 1 and len(results) == 10
        expected = np.asarray(Image.open(io.BytesIO(assets["pngs"][2 + winners[0]])))
        assert np.array_equal(station.read_frame("W", 1), expected)
        assert not list(folder.glob(".*.tmp"))


# Low ------------------------------------------------------------------------------------------------------------
def test_integer_parameters_are_bounded(tmp_path, assets):
    with client(tmp_path, assets) as c:
        c.post("/v1/coils", json={"coil_id": "I", **COIL_BODY})
        for path, params in (("/v1/coils", {"offset": "9223372036854775808"}), ("/v1/coils", {"offset": 2**31}),
                             ("/v1/coils", {"limit": "99999999999999999999"}),
                             ("/v1/coils/I/defects", {"offset": "9223372036854775808"}),
                             ("/v1/coils/I/defects/9223372036854775808/crop", {})):
            r = c.get(path, params=params)
            assert r.status_code == 422 and r.json()["status"] == 422, (path, params, r.text)
        r = c.post("/v1/frames", **frame_form("I", 2**64, assets["pngs"][0]))
        assert r.status_code == 422 and "frame" in r.json()["error"]
        assert 'status="500"' not in c.get("/metrics").text


def test_a_coil_larger_than_max_pixels_is_refused_when_opened(tmp_path, assets):
    with client(tmp_path, assets, limits=Limits(max_pixels=1_000_000)) as c:
        r = c.post("/v1/coils", json={"coil_id": "BIG", **COIL_BODY, "frame_width": 16384, "frame_height": 16384})
        assert r.status_code == 422 and "--max-pixels" in r.json()["error"] and "1000000" in r.json()["error"]
        assert c.get("/v1/coils/BIG").status_code == 404
        assert c.post("/v1/coils", json={"coil_id": "OK", **COIL_BODY}).status_code == 201


def test_unfinished_headers_time_out(tmp_path, assets):
    app = create_app(settings(tmp_path, assets))
    with served(app, http=header_timeout_protocol(0.5)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            t0 = time.monotonic()
            data = s.recv(4096)  # b"" when the server closes; a timeout error if it never does
            assert time.monotonic() - t0 < 3 and b"200" not in data
        with httpx.Client(base_url=url) as c:  # complete requests, and keep-alive, are unaffected
            assert c.get("/healthz").status_code == 200
            time.sleep(0.8)
            assert c.get("/healthz").status_code == 200


def test_the_token_is_checked_before_the_body_is_read(tmp_path, assets):
    app = create_app(settings(tmp_path, assets, token=TOKEN))
    with served(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /v1/frames HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n"
                      b"Content-Type: multipart/form-data; boundary=zz\r\n\r\n--zz\r\n")
            s.settimeout(3)
            head = s.recv(4096)  # answered before the 10 MB body was sent
        assert head.startswith(b"HTTP/1.1 401") and b"Bearer" in head


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, past our limit too
def test_the_services_pixel_limit_is_the_one_that_speaks(tmp_path, assets):
    with client(tmp_path, assets, limits=Limits(max_pixels=200_000_000)) as c:
        r = c.post("/v1/classify", files={"image": ("big.png", png_declaring(19_000, 10_000))})
        assert r.status_code == 422 and "truncated" in r.json()["error"], r.text  # allowed, then found empty
        r = c.post("/v1/classify", files={"image": ("bomb.png", png_declaring(30_000, 10_000))})
        assert r.status_code == 413 and "limit is 200000000 px" in r.json()["error"], r.text


def test_a_jpeg_that_ends_early_is_refused_and_a_retry_commits(tmp_path, assets):
    frame = np.asarray(Image.open(assets["frames"][0]).convert("L"))
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95)
    jpeg = buf.getvalue()
    one = io.BytesIO()
    Image.fromarray(frame[:1, :1]).save(one, format="JPEG")
    relabelled = bytearray(one.getvalue())
    i = relabelled.find(b"\xff\xc0")
    relabelled[i + 5 : i + 9] = struct.pack(">HH", FRAME_H, FRAME_W)
    with client(tmp_path, assets) as c:
        c.post("/v1/coils", json={"coil_id": "J", **COIL_BODY})
        for data in (jpeg[: len(jpeg) // 2] + b"\xff\xd9", bytes(relabelled)):
            r = c.post("/v1/frames", **frame_form("J", 0, data))
            assert r.status_code == 422 and "ends before" in r.json()["error"], r.text
        r = c.post("/v1/frames", **frame_form("J", 0, jpeg))
        assert r.status_code == 200 and r.json()["committed"] is True


def test_booleans_are_not_numbers_and_ids_match_in_full(tmp_path, assets):
    with client(tmp_path, assets) as c:
        for key in ("mm_per_px_across", "strip_width_mm", "frame_overlap_px", "frame_width_px"):
            r = c.post("/v1/coils", json={"coil_id": "B", **COIL_BODY, key: True})
            assert r.status_code == 422 and key in r.json()["error"], (key, r.text)
        assert c.post("/v1/coils", json={"coil_id": "C9\n", **COIL_BODY}).status_code == 422
        assert c.get("/v1/coils").json()["coils"] == []


def test_openapi_matches_the_checks(tmp_path, assets):
    with client(tmp_path, assets) as c:
        spec = c.get("/openapi.json").json()
        opened = spec["paths"]["/v1/coils"]["post"]["responses"]
        assert {"200", "201", "409", "422"} <= set(opened)
        create = spec["components"]["schemas"]["CoilCreate"]["properties"]

        def bounds(prop):
            s = next((x for x in prop.get("anyOf", [prop]) if x.get("type") in ("number", "integer")), prop)
            return s.get("minimum", s.get("exclusiveMinimum")), s.get("maximum")

        assert bounds(create["mm_per_px_across"]) == (0.005, 50)
        assert bounds(create["strip_width_mm"]) == (10, 5000)
        assert bounds(create["frame_overlap_px"]) == (0, 8191)
        form = next(iter(spec["components"]["schemas"][name] for name in spec["components"]["schemas"]
                         if name.startswith("Body_post_frame")))
        assert form["properties"]["frame"]["maximum"] == 9_999_999
        assert form["properties"]["image"]["minLength"] == 1
        for path, allowed in (("/v1/coils", {"GET", "POST"}), ("/v1/coils/C1", {"GET"}), ("/healthz", {"GET"})):
            r = c.options(path)
            assert r.status_code == 405 and set(r.headers["allow"].replace(" ", "").split(",")) >= allowed, path
        r = c.put("/v1/coils")
        assert r.status_code == 405 and set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
        docs = c.get("/docs")
        assert docs.status_code == 200 and "https://" not in docs.text and "cdn" not in docs.text.lower()
        for asset in ("/static/docs/swagger-ui-bundle.js", "/static/docs/swagger-ui.css", "/static/docs/init.js"):
            assert c.get(asset).status_code == 200, asset
            assert asset in docs.text
        # ten clients opening one new coil at once: one 201, nine 200
        statuses = []
        threads = [threading.Thread(target=lambda: statuses.append(
            c.post("/v1/coils", json={"coil_id": "SAME", **COIL_BODY}).status_code)) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(statuses) == [200] * 9 + [201]
