"""Independent, literal re-statement of the authors' FoL forward pass (fol-method.md), for tests only.

It works from a plain state dict (the authors' key names, no ``module.``) with explicit
full-matrix attention, the authors' in-place "replace top values", repeat-based aggregation
and the fixed-length zero padding of local features, so our optimised model can be checked
against it number by number.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _ln(x, sd, key):
    return F.layer_norm(x, x.shape[-1:], sd[key + ".weight"], sd[key + ".bias"], eps=1e-6)


def _lin(x, sd, key):
    return F.linear(x, sd[key + ".weight"], sd[key + ".bias"])


def _pos_embed(sd, h, w):
    pos = sd["backbone.model.pos_embed"]
    n = pos.shape[1] - 1
    m = int(math.sqrt(n))
    if h * w == n and h == w:
        return pos
    patch = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, scale_factor=((h + 0.1) / m, (w + 0.1) / m), mode="bicubic", antialias=False)
    assert patch.shape[-2:] == (h, w)
    return torch.cat([pos[:, :1], patch.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1)


def _attention_probs(x, sd, key, heads):
    b, n, c = x.shape
    qkv = _lin(x, sd, key + ".qkv").reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
    return (q @ k.transpose(-2, -1)).softmax(dim=-1), v


def _block(x, sd, i, heads):
    key = f"backbone.model.blocks.{i}"
    b, n, c = x.shape
    probs, v = _attention_probs(_ln(x, sd, key + ".norm1"), sd, key + ".attn", heads)
    a = _lin((probs @ v).transpose(1, 2).reshape(b, n, c), sd, key + ".attn.proj")
    x = x + a * sd[key + ".ls1.gamma"]
    hdn = F.gelu(_lin(_ln(x, sd, key + ".norm2"), sd, key + ".mlp.fc1"))
    return x + _lin(hdn, sd, key + ".mlp.fc2") * sd[key + ".ls2.gamma"]


def _replace_top_values(mat):
    top_idx = torch.topk(mat, 3, dim=1, largest=True, sorted=False)[1]
    kth = mat.sort(dim=1, descending=True)[0][:, int(0.05 * mat.size(1))].unsqueeze(1)
    mat.scatter_(1, top_idx, kth.expand(-1, 3))
    return mat


def _sinkhorn(scores, alpha, iters):
    b, m, n = scores.shape
    couplings = torch.cat([scores, alpha.unsqueeze(1)], 1)
    norm = -torch.tensor(float(m + n)).log()
    log_mu = torch.cat([norm.expand(m), torch.tensor(float(n - m)).log()[None] + norm])
    log_nu = norm.expand(n)
    log_mu, log_nu = log_mu[None].expand(b, -1), log_nu[None].expand(b, -1)
    u, v = torch.zeros_like(log_mu), torch.zeros_like(log_nu)
    for _ in range(iters):
        u = log_mu - torch.logsumexp(couplings + v.unsqueeze(1), dim=2)
        v = log_nu - torch.logsumexp(couplings + u.unsqueeze(2), dim=1)
    return couplings + u.unsqueeze(2) + v.unsqueeze(1) - norm


def _conv1x1(x, sd, key):
    return F.conv2d(x, sd[key + ".weight"], sd[key + ".bias"])


@torch.no_grad()
def reference_forward(sd: dict, x: torch.Tensor, heads: int, max_len: int | None = None):
    """Returns (global [B, D], padded local [B, max_len, 128], region mask [B, h, w], attention [B, h*w])."""
    sd = {k: v.float() for k, v in sd.items()}
    b, _, hh, ww = x.shape
    h, w = hh // 14, ww // 14
    depth = len({k.split(".")[3] for k in sd if k.startswith("backbone.model.blocks.")})
    t = F.conv2d(x, sd["backbone.model.patch_embed.proj.weight"], sd["backbone.model.patch_embed.proj.bias"], stride=14)
    t = t.flatten(2).transpose(1, 2)
    t = torch.cat([sd["backbone.model.cls_token"].expand(b, -1, -1), t], dim=1) + _pos_embed(sd, h, w)
    for i in range(depth - 1):
        t = _block(t, sd, i, heads)
    last = f"backbone.model.blocks.{depth - 1}"
    probs, _ = _attention_probs(_ln(t, sd, last + ".norm1"), sd, last + ".attn", heads)
    attention = probs[:, :, 0, 1:].sum(dim=1)
    t = _block(t, sd, depth - 1, heads)
    t = _ln(t, sd, "backbone.model.norm")
    token, fmap = t[:, 0], t[:, 1:].reshape(b, h, w, -1).permute(0, 3, 1, 2)

    guide = torch.where(attention >= 0.01, attention, torch.zeros_like(attention))
    ag = "aggregator."
    f = _conv1x1(F.relu(_conv1x1(fmap, sd, ag + "cluster_features.0")), sd, ag + "cluster_features.3").flatten(2)
    p = _conv1x1(F.relu(_conv1x1(fmap, sd, ag + "score.0")), sd, ag + "score.3").flatten(2)
    tok = _lin(F.relu(_lin(token, sd, ag + "token_features.0")), sd, ag + "token_features.2")
    p = torch.exp(_sinkhorn(p, 1 - guide, 3))[:, :-1, :]
    confidence = _replace_top_values(p.mean(dim=1)).softmax(dim=-1)
    mask = torch.zeros(b, h * w)
    mask.scatter_(1, torch.topk(confidence, 225, dim=-1)[1], 1)
    mask = mask.view(b, h, w)
    clusters, cdim = p.shape[1], f.shape[1]
    pr = p.unsqueeze(1).repeat(1, cdim, 1, 1)
    fr = f.unsqueeze(2).repeat(1, 1, clusters, 1)
    g = torch.cat([F.normalize(tok, p=2, dim=-1), F.normalize((fr * pr).sum(dim=-1), p=2, dim=1).flatten(1)], dim=-1)
    g = F.normalize(g, p=2, dim=-1)

    up = F.conv_transpose2d(fmap, sd["upconv.weight"], sd["upconv.bias"], stride=2, padding=1)
    up = F.conv_transpose2d(F.relu(up), sd["upconv2.weight"], sd["upconv2.bias"], stride=2, padding=1)
    up = up.permute(0, 2, 3, 1)
    bs, hl, wl, c = up.shape
    m = F.interpolate(mask.unsqueeze(1), size=(hl, wl), mode="nearest").squeeze(1).view(bs, -1)
    flat = up.reshape(bs, -1, c)
    rows = flat[m.nonzero(as_tuple=True)].split(m.sum(dim=1).int().tolist())
    max_len = max_len or hl * wl
    padded = torch.zeros(bs, max_len, c)
    for i, r in enumerate(rows):
        padded[i, : r.shape[0]] = r
    return g, F.normalize(padded, p=2, dim=-1), mask.bool(), attention
