"""Optimal-transport aggregation with a region-guided dustbin, and discriminative-region selection."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import AggregatorConfig

__all__ = ["AggregatorOutput", "RegionAggregator", "clip_top_values", "sinkhorn_with_dustbin"]


def sinkhorn_with_dustbin(scores: torch.Tensor, dustbin: torch.Tensor, iters: int) -> torch.Tensor:
    """Log-domain Sinkhorn on [B, m, n] scores plus a dustbin row [B, n]; returns P [B, m, n].

    Row marginals 1/(m+n) (dustbin row (n-m)/(m+n)), column marginals 1/(m+n); the result is
    shifted back by log(m+n) and exponentiated, and the dustbin row dropped.
    """
    b, m, n = scores.shape
    couplings = torch.cat([scores, dustbin.unsqueeze(1)], dim=1)
    norm = -math.log(m + n)
    log_mu = torch.full((m + 1,), norm, dtype=scores.dtype, device=scores.device)
    log_mu[-1] = math.log(n - m) + norm
    log_nu = torch.full((n,), norm, dtype=scores.dtype, device=scores.device)
    log_mu, log_nu = log_mu.expand(b, -1), log_nu.expand(b, -1)
    u = torch.zeros_like(log_mu)
    v = torch.zeros_like(log_nu)
    for _ in range(iters):
        u = log_mu - torch.logsumexp(couplings + v.unsqueeze(1), dim=2)
        v = log_nu - torch.logsumexp(couplings + u.unsqueeze(2), dim=1)
    log_p = couplings + u.unsqueeze(2) + v.unsqueeze(1) - norm
    return log_p.exp()[:, :-1]


def clip_top_values(values: torch.Tensor, count: int, rank_fraction: float) -> torch.Tensor:
    """Overwrite the ``count`` largest entries of each row with the value at sorted rank
    floor(rank_fraction * n) (descending). Returns a new tensor."""
    n = values.shape[1]
    rank = int(rank_fraction * n)
    _, top_idx = torch.topk(values, count, dim=1)
    kth = values.sort(dim=1, descending=True).values[:, rank : rank + 1]
    return values.scatter(1, top_idx, kth.expand(-1, count))


@dataclass
class AggregatorOutput:
    """Aggregator results; maps are flattened over the h*w patch grid."""

    global_desc: torch.Tensor  # [B, D] unit norm
    assignment: torch.Tensor  # [B, clusters, h*w] transport plan P without dustbin
    confidence: torch.Tensor  # [B, h*w] softmaxed, clipped mean of P over clusters
    attention_soft: torch.Tensor  # [B, h*w] softmaxed, clipped class attention
    mix: torch.Tensor  # [B, h*w] selection map (confidence at test time, + attention in training)
    region_mask: torch.Tensor  # [B, h, w] bool, exactly num_regions True per image
    kl_conf_att: torch.Tensor  # scalar KL(confidence || sg(attention))
    kl_att_conf: torch.Tensor  # scalar KL(attention || sg(confidence))


class RegionAggregator(nn.Module):
    """SALAD-style aggregator (keys ``token_features``, ``cluster_features``, ``score``) with
    FoL's attention-guided dustbin and top-N region selection."""

    def __init__(self, in_dim: int, cfg: AggregatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hid = cfg.hidden_dim
        drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.token_features = nn.Sequential(nn.Linear(in_dim, hid), nn.ReLU(), nn.Linear(hid, cfg.token_dim))
        self.cluster_features = nn.Sequential(
            nn.Conv2d(in_dim, hid, 1), drop, nn.ReLU(), nn.Conv2d(hid, cfg.cluster_dim, 1)
        )
        self.score = nn.Sequential(
            nn.Conv2d(in_dim, hid, 1), drop, nn.ReLU(), nn.Conv2d(hid, cfg.num_clusters, 1)
        )

    def forward(
        self, token: torch.Tensor, patch_map: torch.Tensor, attention: torch.Tensor, use_attention_in_mix: bool
    ) -> AggregatorOutput:
        cfg = self.cfg
        b, _, h, w = patch_map.shape
        feats = self.cluster_features(patch_map).flatten(2)  # [B, d, n]
        scores = self.score(patch_map).flatten(2)  # [B, m, n]
        tok = self.token_features(token)

        guide = torch.where(attention >= cfg.attention_floor, attention, torch.zeros_like(attention))
        assignment = sinkhorn_with_dustbin(scores, 1 - guide, cfg.sinkhorn_iters)

        confidence = clip_top_values(assignment.mean(dim=1), cfg.clip_top, cfg.clip_rank_fraction).softmax(-1)
        att_soft = clip_top_values(attention, cfg.clip_top, cfg.clip_rank_fraction).softmax(-1)
        kl1 = (att_soft.detach() * (att_soft.detach().log() - confidence.log())).sum(-1).mean()
        kl2 = (confidence.detach() * (confidence.detach().log() - att_soft.log())).sum(-1).mean()

        mix = confidence + att_soft if use_attention_in_mix else confidence
        top = torch.topk(mix, cfg.num_regions, dim=-1).indices
        region = torch.zeros(b, h * w, dtype=torch.bool, device=mix.device)
        region = region.scatter(1, top, torch.ones_like(top, dtype=torch.bool))  # tensor source: traceable

        vlad = F.normalize(torch.einsum("bkn,bdn->bdk", assignment, feats), dim=1).flatten(1)
        global_desc = F.normalize(torch.cat([F.normalize(tok, dim=-1), vlad], dim=-1), dim=-1)
        return AggregatorOutput(
            global_desc=global_desc,
            assignment=assignment,
            confidence=confidence,
            attention_soft=att_soft,
            mix=mix,
            region_mask=region.view(b, h, w),
            kl_conf_att=kl1,
            kl_att_conf=kl2,
        )
