"""The inspection service: FastAPI routes over the station, the NEU models, metrics and the dashboard.

Every error is JSON, `{"error": "...", "status": N}`: bad input is a 4xx that says what was expected and
what arrived, and the service keeps serving; a bug is a 500 whose traceback is logged once. Model calls never
run on the event loop: frames go to the station's batcher thread, classify/detect to their own one-thread pools,
database work and /metrics to the threadpool, so health checks answer while frames queue.

Before a route sees a request, `limits.Guard` checks Host, Origin and the token from the headers alone and adds
the security headers, and `limits.BodyLimit` bounds the body. /docs is Swagger UI from the package's own files.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Query, Request, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from steelscan.core.errors import ModelFileError, SteelscanError
from steelscan.core.images import MIN_MODEL_SIDE
from steelscan.grading import load_rules
from steelscan.service import schemas as S
from steelscan.service.limits import BodyLimit, Guard, token_ok
from steelscan.service.metrics import CONTENT_TYPE_LATEST, ServiceMetrics, method_label
from steelscan.service.neu_models import LazyModel, ModelUnavailable, classify, detect
from steelscan.service.settings import Settings, host_names
from steelscan.service.station import MAX_FRAME, Conflict, FrameJob, NotFound, Station
from steelscan.service.uploads import UploadError, decode_image
from steelscan.store import COIL_ID_RULE, MAX_ROWS, CoilConflict

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
CoilId = Annotated[str, PathParam(pattern=COIL_ID_RULE, description="1-64 letters, digits, '.', '_' or '-'")]
Offset = Annotated[int, Query(ge=0, le=MAX_ROWS)]


def _errors(*codes: int) -> dict:
    return {code: {"model": S.ErrorBody} for code in codes}


# 400 covers a Host header that names another server, 408 the request timeout: any route may answer them
OPEN_ERRORS = _errors(400, 408)
V1_ERRORS = _errors(400, 401, 403, 404, 408, 409, 413, 415, 422, 503)


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        e = next(e for e in errs if e.get("type") == "json_invalid")
        return 400, f"malformed JSON body: {e.get('ctx', {}).get('error', e.get('msg'))}"
    parts = []
    for e in errs[:3]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",)) or "request"
        got = e.get("input")
        got = "" if isinstance(got, (dict, list)) or got is None else f", got {str(got)[:80]!r}"
        parts.append(f"{where}: {e.get('msg')}{got}")
    return 422, "; ".join(parts)


def create_app(settings: Settings, station: Station | None = None) -> FastAPI:
    metrics = ServiceMetrics()
    started = time.monotonic()
    if station is None:
        g = settings.geometry
        rules = load_rules(settings.rules) if settings.rules is not None else None
        station = Station(settings.artifact, settings.db, settings.data_dir, rules,
                          settings.threads, settings.max_batch_frames, settings.gate,
                          classifier=settings.station_classifier, gate_model=settings.gate_model,
                          tile_overlap=settings.tile_overlap,
                          frame_shape=(int(g["frame_height"]), int(g["frame_width"])),
                          max_frame_gap=settings.limits.max_frame_gap)
    models = {"classification": LazyModel(settings.classifier, "classification"),
              "detection": LazyModel(settings.detector, "detection")}

    @asynccontextmanager
    async def lifespan(_app):
        yield
        station.close()
        for m in models.values():
            m.close()

    app = FastAPI(title="steelscan inspection service", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, swagger_ui_oauth2_redirect_url=None,
                  description="Frames in, defects in strip coordinates out; coils graded by rules; records in "
                              "SQLite or PostgreSQL. /v1 needs `Authorization: Bearer <token>` unless the "
                              "service listens on loopback without one.")
    app.state.station, app.state.settings, app.state.metrics = station, settings, metrics

    # errors -----------------------------------------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _bad_request(_req, exc: RequestValidationError):
        return error(*_validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(UploadError)
    async def _upload(_req, exc: UploadError):
        return error(exc.status, str(exc))

    @app.exception_handler(SteelscanError)
    async def _steelscan(_req, exc: SteelscanError):
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, (Conflict, CoilConflict)) else \
            503 if isinstance(exc, (ModelUnavailable, ModelFileError)) else 422
        return error(status, str(exc))

    @app.exception_handler(Exception)
    async def _bug(_req, exc: Exception):  # a bug outside the routes (the middleware answers the routes' own)
        log.error("unhandled %s", type(exc).__name__, exc_info=exc)
        return error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    @app.middleware("http")
    async def _timeout_and_metrics(request: Request, call_next):
        t0 = time.perf_counter()
        path, root_path = request.scope["path"], request.scope.get("root_path", "")  # before routing changes them
        try:
            response = await asyncio.wait_for(call_next(request), settings.limits.request_timeout_s)
        except TimeoutError:
            response = error(408, f"request took longer than {settings.limits.request_timeout_s:g} s and was "
                                  "abandoned; a frame may still be committed: posting it again is safe")
        except Exception as exc:  # a bug: one traceback in the log, a JSON 500 to the client
            log.error("unhandled %s in %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
            response = error(500, f"internal error ({type(exc).__name__}); the server log has the details")
        if response.status_code == 405:  # Starlette names the first matching route's methods only
            allow = ", ".join(_allowed_methods(app, path, root_path))
            response = error(405, f"{request.method[:20]} is not allowed on {request.url.path[:200]}; "
                                  f"allowed: {allow}", {"Allow": allow})
        route = getattr(request.scope.get("route"), "path", "unmatched")
        method = method_label(request.method)
        metrics.requests.labels(method, route, response.status_code).inc()
        metrics.latency.labels(method, route).observe(time.perf_counter() - t0)
        if response.status_code >= 400:
            metrics.errors.labels(response.status_code).inc()
        return response

    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_upload_bytes)
    # outermost: Host, Origin and token are refused before the body is read; security headers on everything
    app.add_middleware(Guard, hosts=host_names(settings.host, settings.allowed_hosts), token=settings.token,
                       metrics_public=settings.metrics_public,
                       on_refusal=lambda status: metrics.errors.labels(status).inc())

    # auth: Guard refuses first; this documents the scheme (and /docs' Authorize button) and checks again ---------
    expected = settings.token.encode() if settings.token else None
    bearer = HTTPBearer(auto_error=False, description="the token of `steelscan serve --token-file`")

    def require_token(request: Request, _creds=Depends(bearer)) -> None:
        if expected is not None and not token_ok(request.headers.get("authorization", ""), expected):
            raise HTTPException(401, "missing or bad token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses=V1_ERRORS)

    # coils and frames -------------------------------------------------------------------------------------
    @v1.post("/coils", status_code=201, response_model=S.CoilDetail,
             responses={200: {"model": S.CoilDetail, "description": "The coil was there with this geometry"}})
    async def open_coil(body: S.CoilCreate, response: Response):
        """Open a coil (201), or return the coil of that id and geometry (200); another geometry is a 409."""
        given = body.model_dump(exclude_none=True, exclude={"coil_id"})
        for key in ("frame_width", "frame_height"):  # settings.geometry's names
            if f"{key}_px" in given:
                given[key] = given.pop(f"{key}_px")
        g = {**settings.geometry, **given}
        shape = (int(g.pop("frame_height")), int(g.pop("frame_width")))
        if shape[0] * shape[1] > settings.limits.max_pixels:  # one such frame would hold the inference thread
            raise SteelscanError(f"frames of {shape[1]}x{shape[0]} = {shape[0] * shape[1]} px exceed this service's "
                                 f"limit of {settings.limits.max_pixels} px per image (--max-pixels); open the coil "
                                 "with smaller frames")
        _rec, created = await run_in_threadpool(station.open_coil, body.coil_id, g, shape)
        if not created:
            response.status_code = 200
        return await run_in_threadpool(station.summary, body.coil_id)

    @v1.post("/frames", response_model=S.FrameOut, response_model_exclude_none=True)
    async def post_frame(
        coil_id: Annotated[str, Form(pattern=COIL_ID_RULE)],
        frame: Annotated[int, Form(ge=0, le=MAX_FRAME, description="index from the coil head, from 0; at most "
                                   "--max-frame-gap (1000) past the coil's highest committed frame")],
        image: Annotated[UploadFile, File(json_schema_extra={"minLength": 1}, description="PNG, BMP, JPEG or "
                                          "TIFF, 8-bit, not empty, the coil's frame size, at most --max-pixels")],
    ):
        """Inspect one frame of an open coil and commit it with its defect pieces (idempotent per frame; 409 once
        the coil is closed)."""
        coil = await run_in_threadpool(station.prepare_frame, coil_id, frame)
        data = await image.read()
        img = await run_in_threadpool(decode_image, data, settings.limits.max_pixels, coil.frame_shape,
                                      f"frame {frame}")
        result = await run_in_threadpool(station.stored, coil_id, frame)
        if result is None:
            metrics.queue.set(station.batcher.pending() + 1)
            result = await asyncio.wrap_future(station.submit(FrameJob(coil, frame, img)))
        if result.committed:
            metrics.frames.inc()
            metrics.inference.observe(result.ms / 1000)
            metrics.batch.observe(result.batch_frames)
            for p in result.pieces:
                metrics.pieces.labels(p["class_name"]).inc()
        else:
            metrics.frames_duplicate.inc()
        return result

    @v1.get("/coils", response_model=S.CoilList)
    async def list_coils(limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Offset = 0):
        """Coils, newest first, with the grade their detail shows (provisional while open)."""
        return {"coils": await run_in_threadpool(station.coils, limit, offset), "limit": limit, "offset": offset}

    @v1.get("/coils/{coil_id}", response_model=S.CoilDetail)
    async def get_coil(coil_id: CoilId):
        """The coil with counts by class, periodic findings and its grade (provisional while open)."""
        return await run_in_threadpool(station.summary, coil_id)

    @v1.get("/coils/{coil_id}/defects", response_model=S.DefectPage, response_model_exclude_none=True)
    async def get_defects(
        coil_id: CoilId,
        class_name: Annotated[str | None, Query(alias="class", max_length=64)] = None,
        min_confidence: Annotated[float, Query(ge=0, le=1)] = 0.0,
        along_min_m: float | None = None, along_max_m: float | None = None,
        across_min_mm: float | None = None, across_max_mm: float | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Offset = 0,
    ):
        """The coil's defects so far, merged across frames, filtered, in pages; ordered along the coil."""
        defects = await run_in_threadpool(station.defects, coil_id)
        keep = [d for d in defects
                if (class_name is None or d["class"] == class_name) and d["confidence"] >= min_confidence
                and (along_min_m is None or d["along_m"] >= along_min_m)
                and (along_max_m is None or d["along_m"] <= along_max_m)
                and (across_min_mm is None or d["across_mm"] >= across_min_mm)
                and (across_max_mm is None or d["across_mm"] <= across_max_mm)]
        keep.sort(key=lambda d: (d["along_m"], d["id"]))
        return {"coil_id": coil_id, "total": len(keep), "limit": limit, "offset": offset,
                "defects": keep[offset : offset + limit]}

    @v1.get("/coils/{coil_id}/defects/{defect_id}/crop", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
    async def get_crop(coil_id: CoilId, defect_id: Annotated[int, PathParam(ge=0, le=MAX_ROWS)]):
        """A PNG crop of the defect in its first frame, its box drawn."""
        return Response(await run_in_threadpool(station.crop, coil_id, defect_id), media_type="image/png")

    @v1.post("/coils/{coil_id}/close", response_model=S.Grade)
    async def close_coil(coil_id: CoilId, allow_missing: bool = False):
        """Grade the coil by the rules and close it; the grade names the rules that decided it."""
        return await run_in_threadpool(station.close_coil, coil_id, allow_missing)

    @v1.get("/coils/{coil_id}/report", response_class=Response,
            responses={200: {"content": {"text/html": {}, "text/csv": {}, "application/json": {}}}})
    async def get_report(coil_id: CoilId, format: Literal["html", "csv", "json"] = "html"):  # noqa: A002
        """The coil report: one self-contained HTML page (images inlined), or its CSV / JSON export."""
        folder = await run_in_threadpool(station.report, coil_id)
        if format == "csv":
            return FileResponse(folder / "defects.csv", media_type="text/csv", filename=f"{coil_id}_defects.csv")
        if format == "json":
            return FileResponse(folder / "report.json", media_type="application/json")
        return HTMLResponse(await run_in_threadpool(_inline_images, folder))

    # single images, NEU models ----------------------------------------------------------------------------
    async def _single(image: UploadFile, model: LazyModel, fn):
        img = await run_in_threadpool(decode_image, await image.read(), settings.limits.max_pixels, None, "image",
                                      MIN_MODEL_SIDE)
        return await asyncio.wrap_future(model.pool.submit(fn, model, img))

    @v1.post("/classify", response_model=S.Classification)
    async def post_classify(image: Annotated[UploadFile, File(json_schema_extra={"minLength": 1})]):
        """Classify one image with the NEU-CLS model (built-in `neu-cls` unless configured)."""
        return await _single(image, models["classification"], classify)

    @v1.post("/detect", response_model=S.Detections)
    async def post_detect(image: Annotated[UploadFile, File(json_schema_extra={"minLength": 1})]):
        """Boxes on one image with the NEU-DET detector (built-in `neu-det` unless configured)."""
        return await _single(image, models["detection"], detect)

    app.include_router(v1)

    # open: health, metrics, the dashboard's static files (they hold no data; the data needs the token) ----
    @app.get("/healthz", response_model=S.Health, responses=OPEN_ERRORS)
    async def healthz():
        return {"status": "ok", "model": station.chain.meta.model, "classes": list(station.class_names),
                "warnings": station.warnings, "queue": station.batcher.pending(),
                "uptime_s": round(time.monotonic() - started, 1), "auth": expected is not None}

    @app.get("/metrics", response_class=Response, responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}, **OPEN_ERRORS,
        **({} if settings.metrics_public or expected is None else _errors(401))})
    async def prometheus():
        """Prometheus metrics (the token is needed where /v1 needs one, unless --metrics-public)."""
        metrics.queue.set(station.batcher.pending())
        return Response(await run_in_threadpool(metrics.render), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def dashboard():
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False, status_code=204)
    async def favicon():  # browsers ask for it on every page; no icon, and no 404 in their consoles
        return Response(status_code=204)

    @app.get("/docs", include_in_schema=False)
    async def docs():  # Swagger UI from the package's own files: works offline, no third-party code here
        return FileResponse(STATIC / "docs" / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _allowed_methods(app: FastAPI, path: str, root_path: str) -> list[str]:
    """Every method some route takes at this path (Starlette's 405 names only the first route's): each method is
    tried on a fresh scope (routing leaves FastAPI's own matching state in the request's)."""
    allowed: set[str] = set()
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        bare = {"type": "http", "path": path, "root_path": root_path, "method": method, "headers": []}
        for route in app.router.routes:
            if route.matches(bare)[0] is Match.FULL:
                # a mount (the static files) matches any method; it serves GET and HEAD
                allowed |= {"GET", "HEAD"} if isinstance(route, Mount) else {method}
    return sorted(allowed)


_SRC = re.compile(r'src="([A-Za-z0-9_./-]+\.png)"')


def _inline_images(folder: Path) -> str:
    """report.html with its PNGs as data: URIs, so one response is the whole report."""
    root = folder.resolve()

    def inline(m: re.Match) -> str:
        path = (folder / m.group(1)).resolve()
        if root not in path.parents or not path.is_file():
            return m.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'

    return _SRC.sub(inline, (folder / "report.html").read_text())
