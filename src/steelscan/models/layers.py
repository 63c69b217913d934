"""Building blocks of the Wang 2021 improvements: DCNv2, SPP (spatial pyramid pooling) and CoordConv.

Shapes follow torch: feature maps [N, C, H, W]; RoI features [K, C, S, S]; boxes [K, 4] xyxy in pixels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import deform_conv2d


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 (Zhu et al. 2019): a deformable convolution whose sampling points also carry a learned mask.

    The offset/mask predictor starts at zero (offsets 0, mask sigmoid(0)*2 = 1), so a freshly converted layer
    computes exactly the convolution it replaced; pretrained weights stay valid at step 0.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        kh, kw = conv.kernel_size
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        # timm's TF-"same" convs pad in forward() and store padding 0; "same" strings likewise. A symmetric
        # k//2 pad keeps the output size (for stride 2 it shifts the grid by half a pixel; the offsets learn it).
        if isinstance(self.padding, str) or type(conv).__name__ == "Conv2dSame":
            self.padding = (kh // 2 * conv.dilation[0], kw // 2 * conv.dilation[1])
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None
        self.offset_mask = nn.Conv2d(
            conv.in_channels, 3 * kh * kw, kernel_size=(kh, kw), stride=conv.stride,
            padding=self.padding, dilation=conv.dilation, bias=True,
        )
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)
        self.n_points = kh * kw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.offset_mask(x)
        offset, mask = out[:, : 2 * self.n_points], out[:, 2 * self.n_points :]
        # 2*sigmoid keeps the initial modulation at 1 (an exact copy of the plain conv).
        mask = 2.0 * torch.sigmoid(mask)
        return deform_conv2d(
            x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
            dilation=self.dilation, mask=mask,
        )


def convert_to_dcn(module: nn.Module) -> int:
    """Replace every 3x3 nn.Conv2d inside `module` with a DCNv2 copy. Returns how many were replaced."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d) and child.kernel_size == (3, 3):
            setattr(module, name, ModulatedDeformConv2d(child))
            count += 1
        else:
            count += convert_to_dcn(child)
    return count


class SPP(nn.Module):
    """Spatial pyramid pooling as in YOLOv3-SPP: parallel stride-1 max-pools (5, 9, 13) beside the input, concat, 1x1 conv.

    [N, in_channels, H, W] -> [N, out_channels, H, W]. A 1x1 conv first halves the width (`hidden`), so the
    concat stays cheap on a 2048-channel ResNet C5; the pools see 5..13 cells of the top map, i.e. the
    whole 200 px image at stride 32, which adds global context.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, pool_sizes: tuple[int, ...] = (5, 9, 13),
                 hidden: int | None = None):
        super().__init__()
        out_channels = out_channels or in_channels
        hidden = hidden or max(1, out_channels // 2)
        if any(k % 2 == 0 for k in pool_sizes):
            raise ValueError(f"SPP pool sizes must be odd (same-size output), got {pool_sizes}")
        self.pool_sizes = tuple(pool_sizes)
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                                    nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(nn.Conv2d(hidden * (1 + len(pool_sizes)), out_channels, 1, bias=False),
                                  nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
        self.out_channels = out_channels

    def pyramid(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, C * (1 + len(pool_sizes)), H, W]: the input, then each max-pool, along channels."""
        return torch.cat([x] + [F.max_pool2d(x, k, stride=1, padding=k // 2) for k in self.pool_sizes], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.pyramid(self.reduce(x)))


def coordinate_channels(x: torch.Tensor) -> torch.Tensor:
    """CoordConv's extra channels for a feature map [N, C, H, W]: [N, 2, H, W], channel 0 = x, channel 1 = y,
    each running linearly from -1 (first column/row) to +1 (last), as in Liu et al. 2018."""
    n, _, h, w = x.shape
    ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype) if h > 1 else x.new_zeros(1)
    xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype) if w > 1 else x.new_zeros(1)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).unsqueeze(0).expand(n, 2, h, w)


class CoordConv2d(nn.Module):
    """A convolution that sees two more input channels, the normalised x and y of each position (CoordConv).

    Built from an existing conv (`from_conv`), it copies its weights and starts the coordinate weights at
    zero, so a converted layer computes the same function until training moves them.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.groups != 1:
            raise ValueError(f"CoordConv2d needs an ungrouped conv, got groups={conv.groups}")
        self.conv = nn.Conv2d(conv.in_channels + 2, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, bias=conv.bias is not None)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, : conv.in_channels] = conv.weight
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x, coordinate_channels(x)], dim=1))


def roi_coordinate_channels(boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]], size: int,
                            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Image coordinates of every RoI-pooled cell: [K, 2, size, size] (x, y of the cell centre, scaled so the
    image spans -1..+1), K = the boxes of all images in order. A pooled RoI alone forgets where it was; these
    channels give the box head that position, which is CoordConv's point."""
    out = []
    steps = (torch.arange(size, dtype=dtype) + 0.5) / size  # cell centres in box units
    for b, (h, w) in zip(boxes, image_shapes):
        b = b.to(dtype)
        steps_d = steps.to(b.device)
        xs = b[:, 0:1] + steps_d[None] * (b[:, 2:3] - b[:, 0:1])  # [k, size]
        ys = b[:, 1:2] + steps_d[None] * (b[:, 3:4] - b[:, 1:2])
        xs, ys = 2 * xs / w - 1, 2 * ys / h - 1
        out.append(torch.stack([xs[:, None, :].expand(-1, size, -1), ys[:, :, None].expand(-1, -1, size)], dim=1))
    return torch.cat(out) if out else torch.zeros(0, 2, size, size, dtype=dtype)


class CoordRoIPool(nn.Module):
    """Wrap a torchvision RoI pooler (e.g. MultiScaleRoIAlign): [K, C, S, S] -> [K, C + 2, S, S] with
    `roi_coordinate_channels` appended, so the box head's first conv is a CoordConv."""

    def __init__(self, pool: nn.Module, size: int):
        super().__init__()
        self.pool, self.size = pool, size

    def forward(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        pooled = self.pool(features, boxes, image_shapes)
        coords = roi_coordinate_channels(boxes, image_shapes, self.size, pooled.dtype).to(pooled.device)
        return torch.cat([pooled, coords], dim=1)
