"""The inspection service over HTTP (FastAPI's TestClient): every endpoint, auth, limits and bad input."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from steelscan.cli import main
from steelscan.core.errors import SteelscanError
from steelscan.service.app import create_app
from steelscan.service.settings import Limits, Settings, check_exposure, is_loopback
from steelscan.store import Store
from tests.service_helpers import COIL_BODY, FRAME_H, FRAME_W, coil_frames, png_bytes, served, tiny_artifact

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    return {"artifact": tiny_artifact(root), "frames": coil_frames(root / "coil", n=4)}


def make_client(tmp_path, assets, db: str | None = None, **kw) -> TestClient:
    s = Settings(artifact=assets["artifact"], db=db or str(tmp_path / "records.db"), data_dir=tmp_path / "data",
                 threads=1, **kw)
    return TestClient(create_app(s))


def post_frame(c: TestClient, k: int, data: bytes, coil: str = "C1", **kw):
    return c.post("/v1/frames", data={"coil_id": coil, "frame": str(k)},
                  files={"image": ("frame.png", data, "application/octet-stream")}, **kw)


def run_coil(c: TestClient, frames, coil: str = "C1") -> list[dict]:
    assert c.post("/v1/coils", json={"coil_id": coil, **COIL_BODY}).status_code == 201
    out = []
    for k, f in enumerate(frames):
        r = post_frame(c, k, f.read_bytes(), coil)
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


def test_coil_lifecycle_every_endpoint(tmp_path, assets):
    with make_client(tmp_path, assets) as c:
        h = c.get("/healthz").json()
        assert h["status"] == "ok" and h["auth"] is False and h["model"] == "unet_efficientnet_lite0"
        results = run_coil(c, assets["frames"])
        assert all(r["committed"] for r in results) and sum(len(r["pieces"]) for r in results) > 0
        # a retry of a stored frame is not stored twice and returns the stored pieces
        again = post_frame(c, 1, assets["frames"][1].read_bytes()).json()
        assert again["committed"] is False and again["pieces"] == results[1]["pieces"]
        # re-opening with the same geometry is fine (200), with another is a conflict (409)
        assert c.post("/v1/coils", json={"coil_id": "C1", **COIL_BODY}).status_code == 200
        r = c.post("/v1/coils", json={"coil_id": "C1", **COIL_BODY, "strip_width_mm": 999})
        assert r.status_code == 409 and "geometry" in r.json()["error"]

        coils = c.get("/v1/coils").json()
        assert [x["coil_id"] for x in coils["coils"]] == ["C1"] and coils["coils"][0]["n_frames"] == 4
        detail = c.get("/v1/coils/C1").json()
        assert detail["status"] == "open" and detail["grade_final"] is False and detail["grade"]["grade"]
        assert detail["n_defects"] == sum(detail["counts_by_class"].values()) > 0
        assert detail["coil"]["n_frames"] == 4 and detail["missing_frames"] == []
        # the list shows the grade the detail shows, provisional while open
        assert coils["coils"][0]["grade"] == detail["grade"] and coils["coils"][0]["grade_final"] is False

        page = c.get("/v1/coils/C1/defects", params={"limit": 1000}).json()
        assert page["total"] == detail["n_defects"] == len(page["defects"])
        along = [d["along_m"] for d in page["defects"]]
        assert along == sorted(along) and all(0 <= a <= detail["coil"]["length_m"] for a in along)
        # filters: class, confidence, position; pagination
        cls = next(iter(detail["counts_by_class"]))
        only = c.get("/v1/coils/C1/defects", params={"class": cls, "limit": 1000}).json()
        assert only["total"] == detail["counts_by_class"][cls] and {d["class"] for d in only["defects"]} == {cls}
        conf = sorted(d["confidence"] for d in page["defects"])[len(along) // 2]
        hi = c.get("/v1/coils/C1/defects", params={"min_confidence": conf, "limit": 1000}).json()
        assert hi["total"] == sum(d["confidence"] >= conf for d in page["defects"])
        mid = along[len(along) // 2]
        head = c.get("/v1/coils/C1/defects", params={"along_max_m": mid, "limit": 1000}).json()
        assert head["total"] == sum(a <= mid for a in along)
        p2 = c.get("/v1/coils/C1/defects", params={"limit": 2, "offset": 2}).json()
        assert [d["id"] for d in p2["defects"]] == [d["id"] for d in page["defects"][2:4]]

        crop = c.get(f"/v1/coils/C1/defects/{page['defects'][0]['id']}/crop")
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(crop.content)).size[0] >= 16
        assert c.get("/v1/coils/C1/defects/999999/crop").status_code == 404

        report = c.get("/v1/coils/C1/report")
        assert report.status_code == 200 and "data:image/png;base64," in report.text and "Coil C1" in report.text
        csv = c.get("/v1/coils/C1/report", params={"format": "csv"})
        assert csv.status_code == 200 and csv.text.count("\n") == detail["n_defects"] + 1
        js = c.get("/v1/coils/C1/report", params={"format": "json"}).json()
        assert len(js["defects"]) == detail["n_defects"]
        prov = js["provenance"]  # what produced it, as `steelscan inspect` reports it
        assert prov["model"] == "unet_efficientnet_lite0" and prov["model_source"] and prov["rules_version"]

        grade = c.post("/v1/coils/C1/close").json()
        assert set(grade) >= {"grade", "passed", "score", "decided_by"} and grade["decided_by"]
        closed = c.get("/v1/coils/C1").json()
        assert closed["status"] == "closed" and closed["grade_final"] and closed["grade"] == grade
        assert c.post("/v1/coils/C1/close").json() == grade  # closing twice: the stored grade
        r = post_frame(c, 4, assets["frames"][0].read_bytes())
        assert r.status_code == 409 and "closed" in r.json()["error"]

        metrics = c.get("/metrics").text
        assert "steelscan_frames_total 4.0" in metrics and "steelscan_frames_duplicate_total 1.0" in metrics
        assert 'steelscan_request_seconds_bucket{le="0.005",method="GET",route="/healthz"}' in metrics
        assert 'steelscan_errors_total{status="409"}' in metrics
        openapi = c.get("/openapi.json").json()
        assert {"/v1/frames", "/v1/coils/{coil_id}/defects", "/v1/classify", "/v1/detect"} <= set(openapi["paths"])
        assert "text/html" in c.get("/").headers["content-type"] and c.get("/static/app.js").status_code == 200
    # the records are the same store `steelscan inspect` writes
    store = Store(str(tmp_path / "records.db"))
    assert store.frames_done("C1") == {0, 1, 2, 3} and store.coil("C1")["grade"] == grade
    store.close()


def test_close_refuses_missing_frames_unless_allowed(tmp_path, assets):
    with make_client(tmp_path, assets) as c:
        c.post("/v1/coils", json={"coil_id": "gap", **COIL_BODY})
        assert c.post("/v1/coils/gap/close").status_code == 409  # no frames at all
        for k in (0, 2):
            assert post_frame(c, k, assets["frames"][k].read_bytes(), "gap").status_code == 200
        detail = c.get("/v1/coils/gap").json()
        assert detail["missing_frames"] == [1] and detail["n_missing_frames"] == 1
        r = c.post("/v1/coils/gap/close")
        assert r.status_code == 409 and "lacks 1" in r.json()["error"]
        assert c.post("/v1/coils/gap/close", params={"allow_missing": "true"}).status_code == 200


def test_bad_input_is_a_4xx_with_json_and_service_keeps_serving(tmp_path, assets):
    frame = np.asarray(Image.open(assets["frames"][0]).convert("L"))
    good = png_bytes(frame)
    jpeg = io.BytesIO()
    Image.fromarray(frame).save(jpeg, format="JPEG")
    cases = {
        "truncated PNG": (good[: len(good) // 2], 422, "truncated"),
        "truncated JPEG": (jpeg.getvalue()[:-400], 422, "truncated"),
        "non-image": (b"hello, this is text, not a frame", 415, "expected PNG"),
        "empty body": (b"", 400, "empty"),
        "16-bit": (png_bytes(frame.astype(np.uint16) * 256), 422, "8-bit"),
        "wrong size": (png_bytes(frame[:, :100]), 422, f"expected {FRAME_W}x{FRAME_H}"),
    }
    with make_client(tmp_path, assets, limits=Limits(max_upload_bytes=200_000, max_pixels=2_000_000)) as c:
        c.post("/v1/coils", json={"coil_id": "C1", **COIL_BODY})
        for name, (data, status, words) in cases.items():
            r = post_frame(c, 0, data)
            assert r.status_code == status, (name, r.text)
            assert words in r.json()["error"] and r.json()["status"] == status, name
        # unknown coil, path traversal, bad ids, malformed JSON, unknown keys
        r = post_frame(c, 0, good, coil="nope")
        assert r.status_code == 404 and "unknown coil" in r.json()["error"]
        assert c.get("/v1/coils/nope").status_code == 404
        for path in ("/v1/coils/..%2F..%2Fetc%2Fpasswd/report", "/v1/coils/../../etc/passwd", "/v1/coils/.hidden",
                     "/v1/coils/%2e%2e/defects"):
            r = c.get(path)
            assert r.status_code in (404, 422) and "error" in r.json(), path
        assert not (tmp_path / "data" / "reports" / "..").resolve().joinpath("passwd").exists()
        r = post_frame(c, 0, good, coil="../../x")
        assert r.status_code == 422 and "coil_id" in r.json()["error"]
        r = c.post("/v1/coils", content=b'{"coil_id": "C2",', headers={"content-type": "application/json"})
        assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
        r = c.post("/v1/coils", json={"coil_id": "C2", "strip_widht_mm": 5})
        assert r.status_code == 422 and "strip_widht_mm" in r.json()["error"]
        r = c.post("/v1/coils", json={"coil_id": "C2", "mm_per_px_across": 500})
        assert r.status_code == 422 and "mm_per_px_across" in r.json()["error"]
        r = c.post("/v1/frames", data={"coil_id": "C1", "frame": "-1"}, files={"image": ("f.png", good)})
        assert r.status_code == 422
        # limits: upload size (by Content-Length and streamed), pixel count before decoding
        big = good + b"\0" * 300_000
        r = post_frame(c, 0, big)
        assert r.status_code == 413 and "upload limit" in r.json()["error"]
        head = b'--zz\r\nContent-Disposition: form-data; name="image"; filename="f.png"\r\n\r\n'
        r = c.post("/v1/frames", content=iter([head, b"x" * 150_000, b"x" * 150_000]),  # chunked: no length
                   headers={"content-type": "multipart/form-data; boundary=zz"})
        assert r.status_code == 413
        bomb = png_bytes(np.zeros((3000, 3000), np.uint8))  # 9 Mpx of zeros: small file, large image
        assert len(bomb) < 200_000
        r = c.post("/v1/classify", files={"image": ("b.png", bomb)})
        assert r.status_code == 413 and "limit is 2000000 px" in r.json()["error"]
        # every refusal above was a 4xx: the service still inspects frames
        assert post_frame(c, 0, good).json()["committed"] is True
        assert c.get("/healthz").status_code == 200
        metrics = c.get("/metrics").text
        assert 'steelscan_errors_total{status="500"}' not in metrics


def test_request_timeout_is_a_408_and_health_still_answers(tmp_path, assets):
    import httpx

    app = create_app(Settings(artifact=assets["artifact"], db=str(tmp_path / "r.db"), data_dir=tmp_path / "data",
                              threads=1, limits=Limits(request_timeout_s=0.3)))
    station = app.state.station
    work = station.batcher.work

    def slow(jobs):
        time.sleep(1.5)
        return work(jobs)

    station.batcher.work = slow
    frame = assets["frames"][0].read_bytes()
    with served(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        c.post("/v1/coils", json={"coil_id": "C1", **COIL_BODY})
        t0 = time.perf_counter()
        r = c.post("/v1/frames", data={"coil_id": "C1", "frame": "0"}, files={"image": ("f.png", frame)})
        assert r.status_code == 408 and "posting it again is safe" in r.json()["error"]
        assert time.perf_counter() - t0 < 1.2  # abandoned at 0.3 s, not when the model finished
        t0 = time.perf_counter()
        assert c.get("/healthz").status_code == 200  # while the inference thread is still busy
        assert time.perf_counter() - t0 < 0.5
        time.sleep(2.0)  # the abandoned frame still commits; posting it again is a harmless duplicate
        station.batcher.work = work
        r = c.post("/v1/frames", data={"coil_id": "C1", "frame": "0"}, files={"image": ("f.png", frame)})
        assert r.status_code == 200 and r.json()["committed"] is False


def test_token_required_everywhere_under_v1(tmp_path, assets):
    with make_client(tmp_path, assets, token=TOKEN) as c:
        for method, path in (("get", "/v1/coils"), ("get", "/v1/coils/C1"), ("post", "/v1/coils/C1/close"),
                             ("get", "/v1/coils/C1/defects"), ("get", "/v1/coils/C1/report")):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                            {"Authorization": f"Basic {TOKEN}"}):
                r = getattr(c, method)(path, headers=headers)
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (path, headers)
                assert "token" in r.json()["error"]
        assert post_frame(c, 0, b"x").status_code == 401  # refused before the upload is looked at
        ok = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/v1/coils", headers=ok).status_code == 200
        assert c.post("/v1/coils", json={"coil_id": "C1", **COIL_BODY}, headers=ok).status_code == 201
        assert post_frame(c, 0, assets["frames"][0].read_bytes(), headers=ok).status_code == 200
        # health and the dashboard's static files are open (they hold no records); metrics need the token
        assert c.get("/healthz").json()["auth"] is True and c.get("/").status_code == 200
        assert c.get("/metrics").status_code == 401 and c.get("/metrics", headers=ok).status_code == 200


def test_public_address_needs_a_token(tmp_path, monkeypatch, capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", TOKEN)
    with pytest.raises(SteelscanError, match="refusing to serve on 0.0.0.0 without a token"):
        check_exposure("0.0.0.0", None)
    monkeypatch.delenv("STEELSCAN_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    assert "refusing to serve on 0.0.0.0 without a token" in capsys.readouterr().err
    short = tmp_path / "token"
    short.write_text("abc\n")
    assert main(["serve", "--host", "0.0.0.0", "--token-file", str(short), "--data-dir", str(tmp_path)]) == 2
    assert "expected at least 16" in capsys.readouterr().err


def test_classify_and_detect_single_images(tmp_path, assets):
    import torch

    from steelscan.models.detector import detector_normalise
    from steelscan.models import create_model
    from steelscan.engine.runs import save_checkpoint

    kw = {"num_classes": 7, "min_size": 64, "max_size": 64, "fpn_channels": 16, "representation_size": 32,
          "box_score_thresh": 0.0}
    torch.manual_seed(0)
    det = create_model("frcnn_mobilenetv3_large", **kw)
    mean, std = detector_normalise("frcnn_mobilenetv3_large")
    meta = {"task": "detection", "model": "frcnn_mobilenetv3_large", "model_kwargs": kw, "mean": mean, "std": std,
            "class_names": ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"],
            "label_offset": 1, "image_size": 200, "score_threshold": 0.0}
    save_checkpoint(tmp_path / "det.pt", det, meta)
    image = png_bytes(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8))
    with make_client(tmp_path, assets, detector=str(tmp_path / "det.pt")) as c:
        r = c.post("/v1/classify", files={"image": ("x.bmp", image)})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "neu-cls" and body["class"] in body["probabilities"]
        assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
        r = c.post("/v1/detect", files={"image": ("x.png", image)})
        assert r.status_code == 200, r.text
        for b in r.json()["detections"]:
            assert b["class"] in meta["class_names"] and len(b["box"]) == 4 and 0 <= b["score"] <= 1
        assert c.post("/v1/detect", files={"image": ("x.png", b"GIF89a....")}).status_code == 415
    with make_client(tmp_path, assets, detector=str(tmp_path / "missing.pt"), classifier=str(tmp_path / "det.pt")) as c:
        r = c.post("/v1/detect", files={"image": ("x.png", image)})
        assert r.status_code == 503 and "no detection model" in r.json()["error"]
        r = c.post("/v1/classify", files={"image": ("x.png", image)})
        assert r.status_code == 503 and "expected a classification model" in r.json()["error"]


def test_service_on_postgresql(tmp_path, assets, pg_url):
    with make_client(tmp_path, assets, db=pg_url) as c:
        results = run_coil(c, assets["frames"][:2], coil="PG1")
        assert c.get("/v1/coils/PG1").json()["n_frames"] == 2
        assert c.post("/v1/coils/PG1/close").status_code == 200
    store = Store(pg_url)
    assert store.frames_done("PG1") == {0, 1} and store.coil("PG1")["status"] == "closed"
    stored = [p.as_dict() for p in store.pieces("PG1")]
    assert stored == [p for r in results for p in r["pieces"]]
    store.close()


def test_a_bug_is_a_json_500_and_the_service_keeps_serving(tmp_path, assets, caplog):
    s = Settings(artifact=assets["artifact"], db=str(tmp_path / "r.db"), data_dir=tmp_path / "data", threads=1)
    # raise_server_exceptions: a bug that escaped the app (and got logged a second time by the server) would raise
    with TestClient(create_app(s), raise_server_exceptions=True) as c:
        c.post("/v1/coils", json={"coil_id": "C1", **COIL_BODY})
        station = c.app.state.station
        real = station.summary
        station.summary = lambda coil_id: 1 / 0
        caplog.clear()
        r = c.get("/v1/coils/C1")
        assert r.status_code == 500 and r.json()["error"].startswith("internal error (ZeroDivisionError)")
        logged = [rec for rec in caplog.records if rec.exc_info]
        assert len(logged) == 1 and logged[0].exc_info[0] is ZeroDivisionError  # one traceback, in the log
        station.summary = real
        assert c.get("/v1/coils/C1").status_code == 200
        assert 'steelscan_errors_total{status="500"} 1.0' in c.get("/metrics").text


def test_defect_schema_matches_the_records_json():
    from steelscan.inspection.records import Defect
    from steelscan.service.schemas import Defect as DefectSchema

    d = Defect(1, "3", 0.9, 1.0, 2.0, 3.0, 4.0, 5.0, 0, [0, 0, 1, 1], [0, 0, 1, 1], 1, [0], "scratch", 0.8).as_dict()
    assert {f.alias or name for name, f in DefectSchema.model_fields.items()} == set(d)
    assert DefectSchema.model_validate(d).model_dump(by_alias=True) == d
    plain = Defect(1, "3", 0.9, 1.0, 2.0, 3.0, 4.0, 5.0, 0, [0, 0, 1, 1], [0, 0, 1, 1], 1, [0]).as_dict()
    assert "detector_class" not in plain  # a segmenter's defects keep today's keys
    assert DefectSchema.model_validate(plain).model_dump(by_alias=True, exclude_none=True) == plain


def test_broken_model_files_are_503_and_bad_single_images_4xx(tmp_path, assets):
    """A zero-byte or truncated .pt behind /v1/classify or /v1/detect is a 503 naming the file, not a 500;
    images the shared reader refuses (1x1, a bomb, a 1-bit mask) are 4xx; the service keeps serving."""
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(b"PK\x03\x04" + b"\0" * 60)
    image = png_bytes(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8))
    with make_client(tmp_path, assets, classifier=str(empty), detector=str(truncated)) as c:
        r = c.post("/v1/classify", files={"image": ("x.png", image)})
        assert r.status_code == 503 and "empty.pt is empty (0 bytes)" in r.json()["error"], r.text
        r = c.post("/v1/detect", files={"image": ("x.png", image)})
        assert r.status_code == 503 and "truncated.pt cannot be read as a checkpoint" in r.json()["error"], r.text
        r = c.post("/v1/classify", files={"image": ("one.png", png_bytes(np.zeros((1, 1), np.uint8)))})
        assert r.status_code == 422 and "at least 8 px" in r.json()["error"]
        mask = io.BytesIO()
        Image.fromarray(np.zeros((32, 32), bool)).save(mask, format="PNG")
        r = c.post("/v1/classify", files={"image": ("mask.png", mask.getvalue())})
        assert r.status_code == 422 and "1-bit" in r.json()["error"]
        bomb = bytearray(png_bytes(np.zeros((8, 8), np.uint8)))
        bomb[16:24] = struct.pack(">II", 40_000, 40_000)
        bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
        r = c.post("/v1/classify", files={"image": ("bomb.png", bytes(bomb))})
        assert r.status_code == 413 and "1600000000 px" in r.json()["error"]
        assert c.get("/healthz").status_code == 200
        assert 'steelscan_errors_total{status="500"}' not in c.get("/metrics").text
