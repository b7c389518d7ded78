"""FoL network: numbers equal the literal reference, probe, Sinkhorn, region selection, norms."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from reference_fol import reference_forward

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.model import FoLConfig, arch_config, synthetic_model
from fol_vpr_ros.model.aggregator import clip_top_values, sinkhorn_with_dustbin


def _inputs(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("size", "depth"), [((224, 224), 2), ((322, 322), 3), ((182, 266), 2)])
def test_matches_reference_numbers(size, depth):
    cfg = FoLConfig(backbone=arch_config("vits14", depth=depth), input_size=size)
    model = synthetic_model(cfg, seed=7).eval()
    x = _inputs(2, *size)
    with torch.no_grad():
        out = model(x)
    g_ref, local_ref, mask_ref, att_ref = reference_forward(model.state_dict(), x, heads=6)
    rel = (out.global_desc - g_ref).norm(dim=1) / g_ref.norm(dim=1)
    assert float(rel.max()) < 1e-5
    assert torch.allclose(out.attention, att_ref, atol=1e-6)
    assert torch.equal(out.region_mask, mask_ref)
    for i in range(2):
        n = int(out.local_count[i])
        assert torch.allclose(out.local[i, :n], local_ref[i, :n], atol=1e-5)
        assert float(local_ref[i, n:].abs().max()) == 0.0  # the authors' padding holds no further rows


def test_probe_equals_explicit_softmax(tiny_model):
    x = _inputs(2, 224, 224, seed=1)
    vit = tiny_model.backbone.model
    with torch.no_grad():
        tokens = vit.prepare_tokens(x)
        for blk in vit.blocks[:-1]:
            tokens = blk(tokens)
        last = vit.blocks[-1]
        q, k, _ = last.attn.split_qkv(last.norm1(tokens))
        full = ((q * last.attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        expected = full[:, :, 0, 1:].sum(dim=1)
        out = tiny_model(x)
    assert torch.allclose(out.attention, expected, atol=1e-7)
    heads = tiny_model.cfg.backbone.num_heads
    assert torch.all(out.attention.sum(dim=1) <= heads + 1e-4)


def test_attention_impls_agree(tiny_model):
    x = _inputs(1, 224, 224, seed=2)
    with torch.no_grad():
        a = tiny_model(x)
        tiny_model.set_attention_impl("explicit")
        b = tiny_model(x)
        tiny_model.set_attention_impl("sdpa")
    assert torch.allclose(a.global_desc, b.global_desc, atol=1e-5)
    with pytest.raises(ValueError, match="unknown attention"):
        tiny_model.set_attention_impl("flash9")


def test_sinkhorn_marginals():
    gen = torch.Generator().manual_seed(0)
    b, m, n = 2, 8, 40
    scores, dust = torch.randn(b, m, n, generator=gen), torch.rand(b, n, generator=gen)
    p = sinkhorn_with_dustbin(scores, dust, iters=3)
    dustbin_mass = 1 - p.sum(dim=1)  # columns of the full plan sum to exactly 1 after the last v-update
    assert torch.all(dustbin_mass > 0) and torch.all(dustbin_mass < 1)
    converged = sinkhorn_with_dustbin(scores, dust, iters=500)
    assert torch.allclose(converged.sum(dim=2), torch.ones(b, m), atol=1e-4)  # each cluster row: mass 1
    assert torch.allclose((1 - converged.sum(dim=1)).sum(dim=1), torch.full((b,), float(n - m)), atol=1e-3)


def test_clip_top_values():
    v = torch.randperm(40, generator=torch.Generator().manual_seed(0)).float()[None]  # n = 40 -> rank 2
    out = clip_top_values(v, count=3, rank_fraction=0.05)
    assert float(out.max()) == 37.0  # 39, 38, 37 all become the value at sorted position 2
    assert int((out == 37.0).sum()) == 3
    untouched = v < 37
    assert torch.equal(out[untouched], v[untouched])
    assert float(v.max()) == 39.0  # the input is not modified


def test_regions_rows_and_norms(tiny_model):
    x = _inputs(3, 224, 224, seed=4)
    with torch.no_grad():
        out = tiny_model(x)
    cfg = tiny_model.cfg
    assert out.region_mask.shape == (3, *cfg.grid)
    assert torch.all(out.region_mask.flatten(1).sum(1) == cfg.aggregator.num_regions)
    hl, wl = cfg.local_grid
    assert out.local_dense.shape == (3, hl, wl, cfg.local_head.out_dim)
    up = F.interpolate(out.region_mask[:, None].float(), size=(hl, wl), mode="nearest")[:, 0].bool()
    assert torch.equal(out.local_count, up.flatten(1).sum(1))
    assert torch.allclose(out.global_desc.norm(dim=1), torch.ones(3), atol=1e-5)
    assert out.global_desc.shape[1] == cfg.descriptor_dim
    assert torch.allclose(out.local_dense.norm(dim=-1), torch.ones(3, hl, wl), atol=1e-5)
    for i in range(3):
        n = int(out.local_count[i])
        rc = out.local_rc[i, :n]
        assert torch.all(up[i, rc[:, 0], rc[:, 1]])
        assert torch.allclose(out.local[i, :n], out.local_dense[i, rc[:, 0], rc[:, 1]])
        order = rc[:, 0] * wl + rc[:, 1]
        assert torch.all(order[1:] > order[:-1])  # row-major
        assert torch.all(out.local_rc[i, n:] == -1)


def test_grid_sizes_derived_from_input():
    cfg = FoLConfig(backbone=arch_config("vitb14"), input_size=(322, 322))
    assert cfg.grid == (23, 23) and cfg.local_grid == (89, 89) and cfg.descriptor_dim == 8448
    assert FoLConfig(backbone=arch_config("vitl14"), input_size=(504, 504)).grid == (36, 36)
    with pytest.raises(ConfigError, match="multiple of the patch size 14"):
        FoLConfig(backbone=arch_config("vits14"), input_size=(320, 322))
    with pytest.raises(ConfigError, match="num_regions=225 exceeds"):
        FoLConfig(backbone=arch_config("vits14"), input_size=(182, 182))
    with pytest.raises(ConfigError, match="more patches than its 64 clusters"):
        FoLConfig(backbone=arch_config("vits14"), input_size=(98, 98))


def test_pos_embed_interpolation_offset(tiny_model):
    vit = tiny_model.backbone.model
    assert vit.interpolated_pos_embed(37, 37) is vit.pos_embed
    got = vit.interpolated_pos_embed(16, 16)
    by_size = F.interpolate(vit.pos_embed[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2), size=(16, 16),
                            mode="bicubic").permute(0, 2, 3, 1).reshape(1, 256, -1)
    assert not torch.allclose(got[:, 1:], by_size, atol=1e-6)  # the +0.1 offset changes the numbers
    assert torch.equal(got[:, :1], vit.pos_embed[:, :1])


def test_training_mode_mixes_attention_and_gives_losses():
    cfg = FoLConfig(backbone=arch_config("vits14", depth=2), input_size=(224, 224))
    model = synthetic_model(dataclasses.replace(cfg, trainable_blocks=1), seed=1).train()
    out = model(_inputs(2, 224, 224))
    assert out.kl_conf_att.requires_grad
    assert float(out.kl_conf_att.detach()) >= 0 and float(out.kl_att_conf.detach()) >= 0
    assert torch.all(out.confidence.sum(dim=1) > 1.99)  # confidence + attention, each summing to 1
    (out.kl_conf_att + out.global_desc.sum()).backward()
    frozen = model.backbone.model.blocks[0].attn.qkv.weight
    assert frozen.grad is None or float(frozen.grad.abs().sum()) == 0.0
    assert model.aggregator.score[0].weight.grad is not None


def test_synthetic_weights_deterministic():
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    a, b, c = synthetic_model(cfg, 5).state_dict(), synthetic_model(cfg, 5).state_dict(), synthetic_model(cfg, 6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["aggregator.score.0.weight"], c.state_dict()["aggregator.score.0.weight"])
