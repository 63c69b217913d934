"""Shared fixtures. Real-data tests read ../shared/data and skip with a clear message without it."""

from __future__ import annotations

import os
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
