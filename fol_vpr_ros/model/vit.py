"""DINOv2 ViT with the official parameter names and the class-attention probe of FoL."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import ViTConfig

__all__ = ["ATTENTION_IMPLS", "BackboneOutput", "DinoBackbone", "VisionTransformer"]

ATTENTION_IMPLS = ("sdpa", "explicit")


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection (key ``patch_embed.proj``)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class LayerScale(nn.Module):
    """Per-channel residual scale (key ``gamma``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 - exact GELU - fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """DINOv2's fused SwiGLU feed-forward of ViT-G (keys ``w12``, ``w3``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class Attention(nn.Module):
    """Multi-head self-attention; ``impl`` picks fused SDPA or an explicit softmax (for benchmarks)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.scale = cfg.head_dim**-0.5
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.impl = "sdpa"

    def split_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v as [B, heads, N, head_dim]."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def class_attention(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Softmax attention of the class token over the patch tokens, summed over heads: [B, N-1]."""
        logits = (q[:, :, :1] * self.scale) @ k.transpose(-2, -1)  # [B, heads, 1, N]
        return logits.softmax(dim=-1)[:, :, 0, 1:].sum(dim=1)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = q.shape
        if self.impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            out = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(*self.split_qkv(x))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both branches."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        ffn = SwiGLU if cfg.ffn == "swiglu" else Mlp
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.ln_eps)
        self.attn = Attention(cfg)
        self.ls1 = LayerScale(cfg.embed_dim)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.ln_eps)
        self.mlp = ffn(cfg.embed_dim, cfg.mlp_hidden)
        self.ls2 = LayerScale(cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))

    def forward_with_probe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the block and also return its class-token attention over patches (from one qkv pass)."""
        q, k, v = self.attn.split_qkv(self.norm1(x))
        probe = self.attn.class_attention(q, k)
        x = x + self.ls1(self.attn.attend(q, k, v))
        return x + self.ls2(self.mlp(self.norm2(x))), probe


class VisionTransformer(nn.Module):
    """DINOv2 ViT/14 without registers; keys match the official checkpoints."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.pos_grid**2, c))
        self.mask_token = nn.Parameter(torch.zeros(1, c))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(c, eps=cfg.ln_eps)

    def set_attention_impl(self, impl: str) -> None:
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"unknown attention implementation {impl!r}; valid: {ATTENTION_IMPLS}")
        for blk in self.blocks:
            blk.attn.impl = impl

    def interpolated_pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        """Position embedding for a gh x gw grid, resized the way DINOv2 does (bicubic, +0.1 offset)."""
        m = self.cfg.pos_grid
        gh, gw = int(gh), int(gw)  # plain ints also under tracing (export fixes the input size)
        if gh == m and gw == m:
            return self.pos_embed
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        off = self.cfg.interpolate_offset
        patch_pos = F.interpolate(
            patch_pos.reshape(1, m, m, -1).permute(0, 3, 1, 2),
            scale_factor=((gh + off) / m, (gw + off) / m),
            mode="bicubic",
            antialias=False,
        )
        if patch_pos.shape[-2:] != (gh, gw):
            raise RuntimeError(f"position embedding resized to {tuple(patch_pos.shape[-2:])}, not {gh}x{gw}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        return torch.cat([cls_pos, patch_pos], dim=1).to(self.pos_embed.dtype)

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        p = self.cfg.patch_size
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return tokens + self.interpolated_pos_embed(gh, gw)


@dataclass
class BackboneOutput:
    """Backbone features: class token [B, C], patch map [B, C, h, w], class attention [B, h*w]."""

    token: torch.Tensor
    patch_map: torch.Tensor
    attention: torch.Tensor


class DinoBackbone(nn.Module):
    """The ViT (attribute ``model``, as in the authors' checkpoints) plus FoL's class-attention probe.

    Blocks before the last ``trainable_blocks`` run without gradients, as in training by the authors.
    """

    def __init__(self, cfg: ViTConfig, trainable_blocks: int = 4) -> None:
        super().__init__()
        self.model = VisionTransformer(cfg)
        self.trainable_blocks = max(1, min(trainable_blocks, cfg.depth))

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        vit = self.model
        p = vit.cfg.patch_size
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        frozen = len(vit.blocks) - self.trainable_blocks
        with torch.set_grad_enabled(torch.is_grad_enabled() and frozen == 0):
            tokens = vit.prepare_tokens(x)
            for blk in vit.blocks[:frozen]:
                tokens = blk(tokens)
        if frozen > 0:
            tokens = tokens.detach()
        for blk in vit.blocks[frozen:-1]:
            tokens = blk(tokens)
        tokens, attention = vit.blocks[-1].forward_with_probe(tokens)
        tokens = vit.norm(tokens)
        b, _, c = tokens.shape
        patch_map = tokens[:, 1:].reshape(b, gh, gw, c).permute(0, 3, 1, 2)
        return BackboneOutput(token=tokens[:, 0], patch_map=patch_map, attention=attention)


def init_vit_(vit: VisionTransformer, generator: torch.Generator) -> None:
    """Deterministic synthetic initialisation (truncated normal 0.02, small LayerScale)."""
    for name, param in vit.named_parameters():
        with torch.no_grad():
            if name.endswith("gamma"):
                param.fill_(0.1)
            elif "norm" in name and name.endswith("weight"):
                param.fill_(1.0)
            elif name.endswith("bias") or name == "mask_token":
                param.zero_()
            else:
                std = 0.02 if param.dim() > 1 else 1e-2
                param.copy_(torch.randn(param.shape, generator=generator).clamp_(-2, 2) * std)
    # Patch projection scaled by fan-in so early activations are not vanishingly small.
    w = vit.patch_embed.proj.weight
    with torch.no_grad():
        w.mul_(1.0 / (0.02 * math.sqrt(w[0].numel())))
