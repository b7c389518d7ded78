"""The FoL forward in a fixed-shape form for export: padded local rows, their count and the region mask.

FoLNet selects a data-dependent number of local rows per image (the region mask upsampled to the
local grid, :func:`fol_vpr_ros.model.select_local_rows`). For a graph with static shapes the rows
are instead written into ``max_local_rows(cfg)`` slots (the most cells ``num_regions`` patches can
cover), in the same row-major order, zero padded, with the count and (row, col) = -1 on padding.
The selection is a sort of integer keys, so the exported graph picks exactly the rows torch does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model import FoLConfig, FoLNet

__all__ = [
    "OUTPUT_NAMES",
    "FixedShapeFoL",
    "local_cell_patches",
    "max_local_rows",
    "padded_local_rows",
]

# Graph outputs, in order (B images, L = max_local_rows, h x w patch grid).
OUTPUT_NAMES = (
    "global_desc",  # [B, D] float32, unit norm
    "local",  # [B, L, C] float32 unit-norm rows under the mask, row-major, zero padded
    "local_count",  # [B] int64, real rows per image
    "local_rc",  # [B, L, 2] int64 (row, col) on the local grid, -1 on padding
    "region_mask",  # [B, h, w] bool, the selected patches
    "attention",  # [B, h*w] float32 class attention of the last block
    "confidence",  # [B, h*w] float32 region selection map
)


def local_cell_patches(cfg: FoLConfig) -> torch.Tensor:
    """[H*W] int64: the patch each local-grid cell takes its mask value from.

    Computed with the same nearest interpolation that :func:`select_local_rows` applies to the mask,
    so a gather through this table reproduces it exactly.
    """
    gh, gw = cfg.grid
    patch_ids = torch.arange(gh * gw, dtype=torch.float64).view(1, 1, gh, gw)
    cells = F.interpolate(patch_ids, size=cfg.local_grid, mode="nearest")
    return cells.flatten().round().long()


def max_local_rows(cfg: FoLConfig) -> int:
    """The most local rows one image can have: the ``num_regions`` patches covering the most cells."""
    gh, gw = cfg.grid
    per_patch = torch.bincount(local_cell_patches(cfg), minlength=gh * gw)
    return int(per_patch.topk(cfg.aggregator.num_regions).values.sum())


def padded_local_rows(
    dense: torch.Tensor, region_mask: torch.Tensor, cell_patches: torch.Tensor, slots: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed-shape :func:`select_local_rows`: (rows [B, slots, C], counts [B], rc [B, slots, 2]).

    ``slots`` must be at least the largest count (``max_local_rows``); rows beyond the count are zero.
    """
    b, hl, wl, c = dense.shape
    cells = hl * wl
    under = region_mask.flatten(1)[:, cell_patches]  # [B, H*W] bool
    counts = under.sum(dim=1)
    position = torch.arange(cells, device=dense.device).expand(b, -1)
    keys = torch.where(under, position, position + cells)  # selected cells first, each group row-major
    order = torch.topk(keys, slots, dim=1, largest=False, sorted=True).values
    valid = order < cells
    index = torch.where(valid, order, torch.zeros_like(order))
    rows = torch.gather(dense.reshape(b, cells, c), 1, index.unsqueeze(-1).expand(-1, -1, c))
    rows = rows * valid.unsqueeze(-1).to(rows.dtype)
    rc = torch.stack([index // wl, index % wl], dim=-1)
    rc = torch.where(valid.unsqueeze(-1), rc, torch.full_like(rc, -1))
    return rows, counts, rc


class FixedShapeFoL(nn.Module):
    """FoLNet in eval mode returning the :data:`OUTPUT_NAMES` tuple with static shapes (batch aside).

    ``backbone_dtype`` runs only the ViT in that dtype (e.g. float16); its outputs are cast back to
    float32 so region selection, aggregation and the local head stay in float32.
    """

    def __init__(self, model: FoLNet, backbone_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model = model.eval()
        self.backbone_dtype = backbone_dtype
        if backbone_dtype != torch.float32:
            self.model.backbone.to(backbone_dtype)
        self.register_buffer("cell_patches", local_cell_patches(model.cfg), persistent=False)
        self.slots = max_local_rows(model.cfg)

    @property
    def cfg(self) -> FoLConfig:
        return self.model.cfg

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.model.backbone(images.to(self.backbone_dtype))
        token, patch_map, attention = feats.token.float(), feats.patch_map.float(), feats.attention.float()
        agg = self.model.aggregator(token, patch_map, attention, use_attention_in_mix=False)
        dense = self.model.dense_local(patch_map)
        rows, counts, rc = padded_local_rows(dense, agg.region_mask, self.cell_patches, self.slots)
        return agg.global_desc, rows, counts, rc, agg.region_mask, attention, agg.mix
