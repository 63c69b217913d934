"""Data: Severstal RLE masks, NEU-CLS / NEU-DET readers, synthetic strips, statistics."""

from steelscan.data.classes import (
    NEU_CLASSES,
    NEU_CLS_PREFIXES,
    NEU_PREFIX_TO_CLASS,
    SEVERSTAL_CLASSES,
    SEVERSTAL_SHAPE,
)
from steelscan.data.rle import rle_decode, rle_encode

__all__ = [
    "NEU_CLASSES",
    "NEU_CLS_PREFIXES",
    "NEU_PREFIX_TO_CLASS",
    "SEVERSTAL_CLASSES",
    "SEVERSTAL_SHAPE",
    "rle_decode",
    "rle_encode",
]
