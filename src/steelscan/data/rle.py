"""Severstal run-length encoding, Kaggle's convention.

A mask of shape (H, W) is flattened column-major (top to bottom, then left to right); the string lists
"start length" pairs with 1-indexed starts, sorted, non-overlapping, separated by single spaces.
An empty mask encodes to "" (Kaggle leaves EncodedPixels empty).
"""

from __future__ import annotations

import numpy as np

from steelscan.data.classes import SEVERSTAL_SHAPE


def rle_decode(rle: str, shape: tuple[int, int] = SEVERSTAL_SHAPE) -> np.ndarray:
    """Decode an RLE string into a uint8 mask of `shape` (H, W) with values {0, 1}."""
    height, width = shape
    n = height * width
    flat = np.zeros(n, dtype=np.uint8)
    if rle is None or (isinstance(rle, float) and np.isnan(rle)):
        return flat.reshape(width, height).T
    if not isinstance(rle, str):
        raise ValueError(f"RLE must be a string of 'start length' pairs, got {type(rle).__name__}")
    tokens = rle.split()
    if not tokens:
        return flat.reshape(width, height).T
    if len(tokens) % 2:
        raise ValueError(f"RLE must hold an even number of values (start length pairs), got {len(tokens)}")
    try:
        values = np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next((t for t in tokens if not t.lstrip("+-").isdigit()), tokens[0])
        raise ValueError(f"RLE values must be integers, got {bad!r}") from None
    starts, lengths = values[0::2], values[1::2]
    if (starts < 1).any():
        raise ValueError(f"RLE starts are 1-indexed and must be >= 1, got {int(starts.min())}")
    if (lengths < 1).any():
        raise ValueError(f"RLE run lengths must be >= 1, got {int(lengths.min())}")
    ends = starts - 1 + lengths  # exclusive, 0-indexed
    if ends.max() > n:
        i = int(np.argmax(ends > n))
        raise ValueError(
            f"RLE run {int(starts[i])} {int(lengths[i])} ends at pixel {int(ends[i])}, "
            f"past the end of a {height}x{width} image ({n} pixels)"
        )
    if len(starts) > 1:
        prev_end, next_start = ends[:-1], starts[1:] - 1
        bad = np.flatnonzero(next_start < prev_end)
        if bad.size:
            i = int(bad[0])
            kind = "unsorted" if starts[i + 1] < starts[i] else "overlapping"
            raise ValueError(
                f"RLE runs must be sorted and not overlap, got {kind} runs "
                f"{int(starts[i])} {int(lengths[i])} and {int(starts[i + 1])} {int(lengths[i + 1])}"
            )
    # Mark run boundaries with +1/-1 and integrate. Starts (and ends) are strictly increasing here,
    # so plain fancy-index updates never collide within one array.
    delta = np.zeros(n + 1, dtype=np.int8)
    delta[starts - 1] += 1
    delta[ends] -= 1
    flat = np.cumsum(delta[:-1], dtype=np.int8).astype(np.uint8)
    return flat.reshape(width, height).T


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask (non-zero = defect) into Kaggle's RLE string."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode expects a 2-D (H, W) mask, got shape {mask.shape}")
    flat = (mask.T.reshape(-1) != 0).astype(np.int8)
    padded = np.concatenate(([0], flat, [0]))
    edges = np.flatnonzero(padded[1:] != padded[:-1]) + 1  # 1-indexed run starts and exclusive ends
    starts, ends = edges[0::2], edges[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends))
