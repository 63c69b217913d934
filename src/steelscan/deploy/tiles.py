"""Frames to model tiles and back: a frame is reflect-padded to whole tiles, cut, inferred, stitched, cropped.

Shapes: a frame is uint8 [H, W] (or [H, W, 3]); tiles uint8 [N, th, tw] (or [N, th, tw, 3]) in row-major order;
probabilities [C, H, W]. Segmenter artifacts take a fixed tile (`SegmenterPredictor` with the ONNX back end);
the station cuts its frames here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


STRIDE = 32  # the segmenters' total downsampling: a tile's sides must be multiples of it
MAX_TILE_PX = 4 * 2**20


def whole_frame_tile(frame_shape: tuple[int, int]) -> tuple[int, int] | None:
    """The frame itself as the tile, when the model can take it in one piece (sides multiples of STRIDE, at most
    MAX_TILE_PX): no padding and no seams. Measured on 1600x256 frames: 1.37x the frames/s of 256x512 tiles
    (which pad 1600 to 2048), at the Dice of whole-frame eager inference (benchmarks/throughput.py)."""
    h, w = (int(v) for v in frame_shape)
    return (h, w) if h % STRIDE == 0 and w % STRIDE == 0 and h * w <= MAX_TILE_PX else None


@dataclass(frozen=True)
class TileGrid:
    height: int
    width: int
    tile: tuple[int, int]

    @property
    def rows(self) -> int:
        return -(-self.height // self.tile[0])

    @property
    def cols(self) -> int:
        return -(-self.width // self.tile[1])


def cut_tiles(frame: np.ndarray, tile: tuple[int, int]) -> tuple[np.ndarray, TileGrid]:
    grid = TileGrid(frame.shape[0], frame.shape[1], tuple(tile))
    th, tw = grid.tile
    ph, pw = grid.rows * th - grid.height, grid.cols * tw - grid.width
    rest = frame.shape[2:]  # () for grey, (3,) for RGB
    padded = np.pad(frame, ((0, ph), (0, pw)) + ((0, 0),) * len(rest), mode="reflect") if ph or pw else frame
    tiles = padded.reshape(grid.rows, th, grid.cols, tw, *rest).swapaxes(1, 2).reshape(-1, th, tw, *rest)
    return tiles, grid


def stitch(tile_maps: np.ndarray, grid: TileGrid) -> np.ndarray:
    """[N, C, th, tw] per tile -> [C, H, W] for the frame."""
    n, c, th, tw = tile_maps.shape
    full = tile_maps.reshape(grid.rows, grid.cols, c, th, tw).transpose(2, 0, 3, 1, 4)
    return full.reshape(c, grid.rows * th, grid.cols * tw)[:, : grid.height, : grid.width]
