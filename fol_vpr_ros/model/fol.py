"""FoLNet: DINOv2 backbone + region aggregator + dense local head, with a named output."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import Precision, autocast, parse_precision
from .aggregator import RegionAggregator
from .config import FoLConfig
from .vit import BackboneOutput, DinoBackbone

__all__ = ["FoLNet", "FoLOutput", "select_local_rows"]


@dataclass
class FoLOutput:
    """Everything one forward pass produces (B images, patch grid h x w, local grid H x W).

    - ``global_desc`` [B, D] unit norm (D = 8448 with the default aggregator)
    - ``local_dense`` [B, H, W, 128], unit norm per location
    - ``region_mask`` [B, h, w] bool, the selected discriminative patches
    - ``local`` [B, Lmax, 128] selected local rows (row-major order), zero padded
    - ``local_count`` [B] number of real rows per image
    - ``local_rc`` [B, Lmax, 2] (row, col) of each row on the local grid, -1 on padding
    - ``attention`` [B, h*w] class attention of the last block, summed over heads
    - ``confidence`` [B, h*w] selection map (softmaxed, clipped cluster confidence; in training
      the sum with the softmaxed attention)
    - ``soft_region`` [B, H, W] bilinear upsampling of the selection map (used by CEL)
    - ``assignment`` [B, clusters, h*w] transport plan; ``patch_features`` [B, C, h*w] unit norm
    - ``kl_conf_att`` / ``kl_att_conf`` the two SAL terms (scalars)
    """

    global_desc: torch.Tensor
    local_dense: torch.Tensor
    region_mask: torch.Tensor
    local: torch.Tensor
    local_count: torch.Tensor
    local_rc: torch.Tensor
    attention: torch.Tensor
    confidence: torch.Tensor
    soft_region: torch.Tensor
    assignment: torch.Tensor
    patch_features: torch.Tensor
    kl_conf_att: torch.Tensor
    kl_att_conf: torch.Tensor


def select_local_rows(
    dense: torch.Tensor, region_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the dense vectors under the nearest-upsampled region mask, row-major, zero padded.

    Returns (rows [B, Lmax, C], counts [B], rc [B, Lmax, 2]).
    """
    b, hl, wl, c = dense.shape
    up = F.interpolate(region_mask[:, None].float(), size=(hl, wl), mode="nearest")[:, 0] > 0.5
    counts = up.flatten(1).sum(1)
    lmax = int(counts.max()) if b else 0
    rows = dense.new_zeros(b, lmax, c)
    rc = torch.full((b, lmax, 2), -1, dtype=torch.long, device=dense.device)
    for i in range(b):
        r, col = torch.nonzero(up[i], as_tuple=True)
        n = r.numel()
        rows[i, :n] = dense[i, r, col]
        rc[i, :n, 0], rc[i, :n, 1] = r, col
    return rows, counts, rc


class FoLNet(nn.Module):
    """The FoL network; parameter names follow the authors' checkpoints (minus ``module.``)."""

    def __init__(self, cfg: FoLConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.backbone.embed_dim
        lh = cfg.local_head
        self.backbone = DinoBackbone(cfg.backbone, cfg.trainable_blocks)
        self.aggregator = RegionAggregator(c, cfg.aggregator)
        self.upconv = nn.ConvTranspose2d(c, lh.hidden_dim, lh.kernel_size, lh.stride, lh.padding)
        self.upconv2 = nn.ConvTranspose2d(lh.hidden_dim, lh.out_dim, lh.kernel_size, lh.stride, lh.padding)
        self.relu = nn.ReLU()
        # precision of the ViT backbone only: the aggregator (region selection) and the local head
        # always run in float32 on float32 features, which keeps the fp32 region patches
        self.backbone_precision = Precision.FP32

    def set_precision(self, precision: Precision | str) -> None:
        """Run the backbone under autocast in ``precision`` (resolved: fp32, bf16 or fp16)."""
        p = parse_precision(precision)
        if p is Precision.AUTO:
            raise ValueError("resolve precision 'auto' for the model's device first (resolve_precision)")
        self.backbone_precision = p

    def _backbone(self, images: torch.Tensor) -> BackboneOutput:
        if self.backbone_precision is Precision.FP32:
            return self.backbone(images)
        with autocast(self.backbone_precision, images.device):
            feats = self.backbone(images)
        return BackboneOutput(token=feats.token.float(), patch_map=feats.patch_map.float(),
                              attention=feats.attention.float())

    def forward(self, images: torch.Tensor) -> FoLOutput:
        """``images``: normalised [B, 3, H, W] with H, W multiples of the patch size."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
        self.cfg.grid_for(images.shape[-2:])
        feats = self._backbone(images)
        agg = self.aggregator(feats.token, feats.patch_map, feats.attention, use_attention_in_mix=self.training)

        dense = self.dense_local(feats.patch_map)
        rows, counts, rc = select_local_rows(dense, agg.region_mask)

        b, h, w = agg.region_mask.shape
        soft = F.interpolate(agg.mix.view(b, 1, h, w), size=dense.shape[1:3], mode="bilinear", align_corners=True)
        return FoLOutput(
            global_desc=agg.global_desc,
            local_dense=dense,
            region_mask=agg.region_mask,
            local=rows,
            local_count=counts,
            local_rc=rc,
            attention=feats.attention,
            confidence=agg.mix,
            soft_region=soft[:, 0],
            assignment=agg.assignment,
            patch_features=F.normalize(feats.patch_map.flatten(2), dim=1),
            kl_conf_att=agg.kl_conf_att,
            kl_att_conf=agg.kl_att_conf,
        )

    def dense_local(self, patch_map: torch.Tensor) -> torch.Tensor:
        """The local head: patch map [B, C, h, w] -> unit-norm dense local features [B, H, W, out_dim]."""
        dense = self.upconv2(self.relu(self.upconv(patch_map))).permute(0, 2, 3, 1)
        return F.normalize(dense, dim=-1)

    def set_attention_impl(self, impl: str) -> None:
        """Switch every block between fused SDPA and the explicit-softmax reference."""
        self.backbone.model.set_attention_impl(impl)
