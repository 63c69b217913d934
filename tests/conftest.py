"""Shared fixtures. Real-data tests read ../shared/data and skip with a clear message without it.

PostgreSQL tests use STEELSCAN_TEST_PG_URL (a server URL to an admin database) or start a throwaway
local cluster from the PostgreSQL server binaries; without either they skip, saying so.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("STEELSCAN_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data(name: str) -> Path:
    """Path of a real data set under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (tests read ../shared/data; see its README)")
    return path


PG_MISSING = ("set STEELSCAN_TEST_PG_URL=postgresql://USER@HOST:PORT/postgres (a server the tests may create "
              "databases on) or install the server binaries (Debian: apt-get install postgresql)")


def _pg_bindir() -> Path | None:
    """A folder with initdb and pg_ctl: PATH first, then Debian's /usr/lib/postgresql/VERSION/bin (newest)."""
    found = shutil.which("initdb")
    debian = [Path(d) for d in glob.glob("/usr/lib/postgresql/*/bin") if Path(d).parent.name.isdigit()]
    dirs = ([Path(found).resolve().parent] if found else []) + sorted(debian, key=lambda d: -int(d.parent.name))
    return next((d for d in dirs if (d / "initdb").is_file() and (d / "pg_ctl").is_file()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server():
    """Admin URL of a PostgreSQL server: STEELSCAN_TEST_PG_URL, or a throwaway cluster stopped at session end."""
    if os.environ.get("STEELSCAN_TEST_PG_URL"):
        from sqlalchemy.engine import make_url

        # psycopg itself takes only plain postgresql:// URLs.
        yield make_url(os.environ["STEELSCAN_TEST_PG_URL"]).set(drivername="postgresql").render_as_string(False)
        return
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(f"PostgreSQL tests: no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin; {PG_MISSING}")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="steelscan-pg-"))  # not pytest's tmp dir: root-only when run as root
    if os.geteuid() == 0:  # postgres refuses to run as root
        import pwd

        try:
            os.chown(base, *pwd.getpwnam("postgres")[2:4])
        except KeyError:
            pass
        if not shutil.which("runuser") or base.stat().st_uid == 0:
            base.rmdir()
            pytest.skip(f"PostgreSQL tests: running as root without runuser or a 'postgres' OS user; {PG_MISSING}")
        as_user = [shutil.which("runuser"), "-u", "postgres", "--"]
    data, port = base / "data", _free_port()

    def pg(tool: str, *args: str) -> None:
        subprocess.run([*as_user, str(bindir / tool), *args], cwd=base, check=True, capture_output=True, text=True,
                       timeout=120)

    watchdog = None
    try:
        # Trust auth, fsync off: a throwaway cluster listening on loopback and a private socket folder only.
        pg("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(base / "log"),
           "-o", f"-F -h 127.0.0.1 -p {port} -k {base}")
        # pg_ctl detaches the server; should pytest be killed before teardown, this stops it anyway.
        stop = shlex.join([*as_user, str(bindir / "pg_ctl"), "stop", "-m", "immediate", "-D", str(data)])
        watchdog = subprocess.Popen(["sh", "-c", f"while kill -0 {os.getpid()}; do sleep 1; done 2>/dev/null; "
                                                 f"{stop}; rm -rf {shlex.quote(str(base))}"],
                                    cwd=base, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    except subprocess.CalledProcessError as e:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        raise RuntimeError(f"starting a throwaway PostgreSQL failed: {e.cmd}\n{e.stdout}{e.stderr}{log}") from None
    finally:
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "stop", "-m", "immediate", "-w", "-D", str(data)],
                           cwd=base, capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server):
    """URL of a fresh, empty database on the test server, dropped after the test: tests cannot see each other's rows."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"steelscan_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # FORCE: a test may leave a connection open


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module (benchmarks/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------------------------------
# Tiny data sets in every label layout (tests/layouts.py writes them by hand; EXPECT there says what each holds).
# Session-scoped and shared: treat them as read-only (copy with shutil.copytree before changing one).
#   tiny_folders        14 class-folder images, 4 classes ("rust spot", "ölfleck" ...), PNG/JPEG/BMP/TIFF, RGB+grey,
#                       no own split; one zero-byte image (unreadable_image)
#   tiny_folders_split  15 images under train/ valid/ test/ (class union over the three), no problem
#   tiny_yolo           data.yaml (names as a list) + images/ labels/ {train: 10, val: 4}, 4 classes; one image
#                       without txt, one empty txt, a box past the edge, class id 7, an unparsable line, a zero-width
#                       box, an orphan txt
#   tiny_yolo_dict      the same set, names as {id: name}, train given as a .txt list, no `path`
#   tiny_coco           annotations/instances_{train,val}.json + images/, 12 images (9/3), categories 1..3; an image
#                       without annotations, an iscrowd region, a box past the edge, an unknown category, a missing file
#   tiny_voc            CVAT VOC export, 13 usable images (10 train / 3 val by ImageSets), 4 classes incl. labelmap's
#                       box-less "oil-stain"; an xml without objects, a box past the edge, a zero-size box, ...
#   tiny_masks          images/{train,val} + masks/ index PNGs, classes.yaml (3 classes after 'background'), 11 usable
#   tiny_rle            train.csv ClassId 1..5 + 12 train_images/ of 300x120 (3 defect-free), no own split
# ------------------------------------------------------------------------------------------------------------


def _tiny(tmp_path_factory, name: str, build, **kwargs) -> Path:
    from tests import layouts

    return getattr(layouts, build)(tmp_path_factory.mktemp(name), **kwargs)


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "folders", "make_folders")


@pytest.fixture(scope="session")
def tiny_folders_split(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "folders_split", "make_folders", split=True)


@pytest.fixture(scope="session")
def tiny_yolo(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "yolo", "make_yolo")


@pytest.fixture(scope="session")
def tiny_yolo_dict(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "yolo_dict", "make_yolo", names="dict")


@pytest.fixture(scope="session")
def tiny_coco(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "coco", "make_coco")


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "voc", "make_voc")


@pytest.fixture(scope="session")
def tiny_masks(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "masks", "make_masks")


@pytest.fixture(scope="session")
def tiny_rle(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "rle", "make_rle")


@pytest.fixture(scope="session")
def det_synth(tmp_path_factory) -> tuple[Path, Path]:
    """(a synthetic NEU-DET folder: 3 classes x numbers 1..4, No. 4 of each is validation -> 9 train / 3 val,
    a folder of 3 defect-free images)."""
    import cv2
    import numpy as np

    from steelscan.data.synthetic import write_neu_det
    from steelscan.data.synthetic.neu_images import neu_background

    root = tmp_path_factory.mktemp("det")
    write_neu_det(root / "det", n=12, seed=2, workers=1, class_counts={"crazing": 4, "patches": 4, "scratches": 4})
    clean = root / "clean"
    clean.mkdir()
    for k in range(3):
        bg = neu_background("patches", np.random.default_rng(k))
        cv2.imwrite(str(clean / f"clean_{k}.png"), np.clip(bg, 0, 255).astype(np.uint8))
    return root / "det", clean
