"""Building blocks of the Wang 2021 improvements: DCNv2 (modulated deformable convolution).

Shapes follow torch: feature maps [N, C, H, W].
"""

from __future__ import annotations

import torch
import torch.nn as nn
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
