"""The five FoL training losses (fol-method.md section 7), each weight and threshold in ``LossConfig``.

Batches are place-major (P places x K images, labels = place ids). All losses run in float32.

Interpretation choices (the method text leaves them open):

* Multi-Similarity loss and miner follow pytorch-metric-learning's ``MultiSimilarityMiner`` /
  ``MultiSimilarityLoss`` (cosine similarity, strict inequalities, anchors without a mined pair
  contribute 0). ``ms_average='batch'`` (default, as that library's mean reducer and the original
  MS-loss code) divides by all anchors; ``'anchors_with_pairs'`` divides by the anchors that have a
  mined positive or negative pair.
* Local loss: for every anchor the hardest positive (same place, lowest global similarity) and the
  hardest negative (other place, highest global similarity). The local similarity of two images is
  the mean dot product of their mutual-nearest-neighbour pairs (local rows under the region mask)
  whose dot product exceeds ``local_threshold``. The pair selection runs without gradients; the
  mean is recomputed with gradients from the selected rows. When no pair passes the threshold,
  ``local_fallback`` decides: ``'mnn'`` (default) takes the mean over all mutual nearest neighbours
  (there is always at least one: the largest entry of the similarity matrix), ``'aligned'`` the
  authors' mean dot product of rows with the same index, ``'zero'`` a constant 0. An image without
  local rows has local similarity 0. Loss: mean over anchors of max(0, margin + s_neg - s_pos).
* CEL and weak supervision pair every image with the next image of its place (cyclically), so
  each image appears once as the first member of a pair.
* Weak supervision: for a pair (i, j), every patch p inside i's region mask takes its argmax
  cluster c in the transport plan; candidates are patches q of j with plan[j, c, q] >
  ``weak_assign_threshold``; among them the best and second-best cosine of the (unit-norm, last
  layer) patch features. A correspondence is kept when best > ``weak_cos_threshold`` and best /
  second > ``weak_ratio`` (a single candidate, or a second-best <= 0, passes the ratio test); at
  most ``weak_max_pairs`` per pair, highest cosine first. Patch (r, c) sits at local-grid cell
  (r * 4, c * 4) (the centre of its transposed-convolution footprint: o = 2 i twice). Each kept
  correspondence contributes cos_patch * (1 - <D_i, D_j>) with the patch cosine detached and D the
  unit-norm dense local features; the term is the mean over kept correspondences (0 if none) and
  is weighted by ``weak_weight`` (1e-2) in the total.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..model.fol import FoLOutput
from ..pipeline.rerank import DEFAULT_THRESHOLD

__all__ = [
    "CEL_BACKGROUND_WEIGHT",
    "CEL_FOREGROUND_WEIGHT",
    "LossConfig",
    "LossTerms",
    "cel_loss",
    "fol_loss",
    "local_similarity",
    "local_triplet_loss",
    "multi_similarity_loss",
    "multi_similarity_miner",
    "partner_indices",
    "sal_loss",
    "weak_correspondences",
    "weak_supervision_loss",
]

# CEL weights of the foreground (inside the region mask) and background terms (the authors'); not a threshold.
CEL_FOREGROUND_WEIGHT = 0.7
CEL_BACKGROUND_WEIGHT = 0.3


@dataclass(frozen=True)
class LossConfig:
    """Weights and thresholds of the five terms (authors' defaults)."""

    ms_weight: float = 1.0
    ms_alpha: float = 1.0
    ms_beta: float = 50.0
    ms_base: float = 0.0
    miner_epsilon: float = 0.1
    use_miner: bool = True
    ms_average: str = "batch"
    local_weight: float = 1.0
    local_threshold: float = DEFAULT_THRESHOLD  # the re-ranking's mutual-match threshold
    local_margin: float = 0.0
    local_fallback: str = "mnn"
    sal_weight: float = 5e-3
    cel_weight: float = 1.0
    cel_fg_weight: float = CEL_FOREGROUND_WEIGHT
    cel_bg_weight: float = CEL_BACKGROUND_WEIGHT
    weak_weight: float = 1e-2
    weak_assign_threshold: float = 0.1
    weak_cos_threshold: float = 0.8
    weak_ratio: float = 2.0
    weak_max_pairs: int = 5

    def __post_init__(self) -> None:
        for name in ("ms_weight", "local_weight", "sal_weight", "cel_weight", "weak_weight", "cel_fg_weight",
                     "cel_bg_weight", "miner_epsilon", "local_margin"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"loss setting {name} must be >= 0, got {getattr(self, name)}")
        if not (self.ms_alpha > 0 and self.ms_beta > 0):
            raise ConfigError(f"ms_alpha and ms_beta must be > 0, got {self.ms_alpha}, {self.ms_beta}")
        if self.ms_average not in ("batch", "anchors_with_pairs"):
            raise ConfigError(f"ms_average must be 'batch' or 'anchors_with_pairs', got {self.ms_average!r}")
        if self.local_fallback not in ("mnn", "aligned", "zero"):
            raise ConfigError(f"local_fallback must be mnn, aligned or zero, got {self.local_fallback!r}")
        for name in ("local_threshold", "weak_cos_threshold"):
            if not -1 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [-1, 1), got {getattr(self, name)}")
        if not 0 <= self.weak_assign_threshold < 1:
            raise ConfigError(f"weak_assign_threshold must be in [0, 1), got {self.weak_assign_threshold}")
        if not self.weak_ratio >= 1:
            raise ConfigError(f"weak_ratio must be >= 1, got {self.weak_ratio}")
        if isinstance(self.weak_max_pairs, bool) or not isinstance(self.weak_max_pairs, int) or self.weak_max_pairs < 1:
            raise ConfigError(f"weak_max_pairs must be a positive integer, got {self.weak_max_pairs!r}")


@dataclass
class LossTerms:
    """Weighted total and the unweighted terms (scalar tensors), plus mining statistics."""

    total: torch.Tensor
    ms: torch.Tensor
    local: torch.Tensor
    sal: torch.Tensor
    cel: torch.Tensor
    weak: torch.Tensor
    mined_pos: int = 0
    mined_neg: int = 0
    weak_pairs: int = 0

    TERMS = ("total", "ms", "local", "sal", "cel", "weak")

    def to_floats(self) -> dict[str, float]:
        out = {k: float(getattr(self, k).detach()) for k in self.TERMS}
        out.update(mined_pos=self.mined_pos, mined_neg=self.mined_neg, weak_pairs=self.weak_pairs)
        return out


# ----------------------------------------------------------------------------------------- global
def _check_labels(labels: torch.Tensor, n: int) -> None:
    if labels.shape != (n,):
        raise ConfigError(f"labels must have shape ({n},), got {tuple(labels.shape)}")


def multi_similarity_miner(sim: torch.Tensor, labels: torch.Tensor, epsilon: float = 0.1
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean [B, B] masks (positive pairs, negative pairs) kept by the MS miner.

    Negative (a, n) is kept when S_an + eps > min positive S of a; positive (a, p) when
    S_ap - eps < max negative S of a. Anchors without positives or negatives keep nothing.
    """
    b = sim.shape[0]
    _check_labels(labels, b)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(b, dtype=torch.bool, device=sim.device)
    pos, neg = same & ~eye, ~same
    s = sim.detach()
    inf = torch.tensor(float("inf"), dtype=s.dtype, device=s.device)
    min_pos = torch.where(pos, s, inf).amin(dim=1, keepdim=True)
    max_neg = torch.where(neg, s, -inf).amax(dim=1, keepdim=True)
    return pos & (s - epsilon < max_neg), neg & (s + epsilon > min_pos)


def _masked_logsumexp_one(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log(1 + sum_{mask} exp(x)) per row; 0 for rows with an empty mask."""
    x = x.masked_fill(~mask, float("-inf"))
    x = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1)
    return torch.logsumexp(x, dim=1).masked_fill(~mask.any(dim=1), 0.0)


def multi_similarity_loss(desc: torch.Tensor, labels: torch.Tensor, cfg: LossConfig | None = None
                          ) -> tuple[torch.Tensor, int, int]:
    """MS loss on (re-normalised) descriptors: (1/a) log(1 + sum_P e^{-a(S-base)}) +
    (1/b) log(1 + sum_N e^{b(S-base)}) per anchor. Returns (loss, mined positive, mined negative pairs)."""
    cfg = cfg or LossConfig()
    x = F.normalize(desc.float(), dim=-1)
    sim = x @ x.T
    b = sim.shape[0]
    _check_labels(labels, b)
    if cfg.use_miner:
        pos, neg = multi_similarity_miner(sim, labels, cfg.miner_epsilon)
    else:
        same = labels[:, None] == labels[None, :]
        pos, neg = same & ~torch.eye(b, dtype=torch.bool, device=sim.device), ~same
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos <= 1 and n_neg <= 1:  # pytorch-metric-learning returns a zero loss then
        return (desc.float() * 0).sum(), n_pos, n_neg
    pos_term = _masked_logsumexp_one(-cfg.ms_alpha * (sim - cfg.ms_base), pos) / cfg.ms_alpha
    neg_term = _masked_logsumexp_one(cfg.ms_beta * (sim - cfg.ms_base), neg) / cfg.ms_beta
    per_anchor = pos_term + neg_term
    if cfg.ms_average == "batch":
        return per_anchor.mean(), n_pos, n_neg
    has = (pos | neg).any(dim=1)
    return per_anchor[has].sum() / has.sum().clamp(min=1), n_pos, n_neg


# ------------------------------------------------------------------------------------------ local
def local_similarity(a: torch.Tensor, b: torch.Tensor, threshold: float = DEFAULT_THRESHOLD, fallback: str = "mnn"
                     ) -> torch.Tensor:
    """Mean dot product of mutual-nearest-neighbour pairs of rows ``a`` [n, d] and ``b`` [m, d] above
    ``threshold`` (pairs chosen without gradient); ``fallback`` when none passes (see module doc)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return (a.sum() + b.sum()) * 0.0
    a, b = a.float(), b.float()
    with torch.no_grad():
        sim = a @ b.T
        best_b = sim.argmax(dim=1)
        best_a = sim.argmax(dim=0)
        ia = torch.arange(a.shape[0], device=a.device)
        mutual = best_a[best_b] == ia
        vals = sim[ia, best_b]
        keep = mutual & (vals > threshold)
        if not bool(keep.any()):
            if fallback == "zero":
                return (a.sum() + b.sum()) * 0.0
            if fallback == "aligned":
                n = min(a.shape[0], b.shape[0])
                return (a[:n] * b[:n]).sum(-1).mean()
            keep = mutual
        ia, ib = ia[keep], best_b[keep]
    return (a[ia] * b[ib]).sum(-1).mean()


def local_triplet_loss(out: FoLOutput, labels: torch.Tensor, cfg: LossConfig | None = None) -> torch.Tensor:
    """Batch-hard triplets by global similarity; hinge on the local similarities (see module doc)."""
    cfg = cfg or LossConfig()
    g = F.normalize(out.global_desc.detach().float(), dim=-1)
    b = g.shape[0]
    _check_labels(labels, b)
    sim = g @ g.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(b, dtype=torch.bool, device=sim.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(1) & neg_mask.any(1)
    if not bool(valid.any()):
        return out.local.float().sum() * 0.0
    hard_pos = sim.masked_fill(~pos_mask, float("inf")).argmin(1)
    hard_neg = sim.masked_fill(~neg_mask, float("-inf")).argmax(1)
    counts = out.local_count.tolist()
    cache: dict[tuple[int, int], torch.Tensor] = {}

    def lsim(i: int, j: int) -> torch.Tensor:
        key = (min(i, j), max(i, j))
        if key not in cache:
            cache[key] = local_similarity(out.local[key[0], : counts[key[0]]], out.local[key[1], : counts[key[1]]],
                                          cfg.local_threshold, cfg.local_fallback)
        return cache[key]

    losses = [F.relu(cfg.local_margin + lsim(i, int(hard_neg[i])) - lsim(i, int(hard_pos[i])))
              for i in torch.nonzero(valid).flatten().tolist()]
    return torch.stack(losses).mean()


# ------------------------------------------------------------------------------------ SAL and CEL
def sal_loss(out: FoLOutput) -> torch.Tensor:
    """KL(conf || sg(att)) + KL(att || sg(conf)) as computed by the aggregator (unweighted)."""
    return out.kl_conf_att.float() + out.kl_att_conf.float()


def partner_indices(labels: torch.Tensor) -> torch.Tensor:
    """For every image, the next image of the same place (cyclically, in batch order); -1 when alone."""
    lab = labels.tolist()
    members: dict[int, list[int]] = {}
    for i, lbl in enumerate(lab):
        members.setdefault(lbl, []).append(i)
    part = [-1] * len(lab)
    for idx in members.values():
        if len(idx) > 1:
            for k, i in enumerate(idx):
                part[i] = idx[(k + 1) % len(idx)]
    return torch.tensor(part, dtype=torch.long, device=labels.device)


def cel_loss(out: FoLOutput, labels: torch.Tensor, cfg: LossConfig | None = None) -> torch.Tensor:
    """Foreground/background contrast: fg = sum soft * D, bg = sum (1 - soft) * D (L2-normalised);
    fg_w (1 - cos(fg_i, fg_j)) + bg_w (1 - cos(bg_i, bg_j)) over (image, place partner), averaged."""
    cfg = cfg or LossConfig()
    _check_labels(labels, out.local_dense.shape[0])
    part = partner_indices(labels)
    i = torch.nonzero(part >= 0).flatten()
    if i.numel() == 0:
        return out.local_dense.float().sum() * 0.0
    dense = out.local_dense.float()
    soft = out.soft_region.float()
    fg = F.normalize(torch.einsum("bhw,bhwc->bc", soft, dense), dim=-1)
    bg = F.normalize(torch.einsum("bhw,bhwc->bc", 1.0 - soft, dense), dim=-1)
    j = part[i]
    cos_fg = (fg[i] * fg[j]).sum(-1)
    cos_bg = (bg[i] * bg[j]).sum(-1)
    return (cfg.cel_fg_weight * (1 - cos_fg) + cfg.cel_bg_weight * (1 - cos_bg)).mean()


# --------------------------------------------------------------------------------- weak supervision
def _local_index(patch: torch.Tensor, grid_w: int, cells_per_patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (patch // grid_w) * cells_per_patch, (patch % grid_w) * cells_per_patch


@torch.no_grad()
def weak_correspondences(out: FoLOutput, i: int, j: int, cfg: LossConfig | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pseudo-correspondences from image ``i`` to ``j``: (patches of i, patches of j, cosine), at most
    ``weak_max_pairs``, highest cosine first."""
    cfg = cfg or LossConfig()
    region = torch.nonzero(out.region_mask[i].reshape(-1)).flatten()
    assign_i, assign_j = out.assignment[i].float(), out.assignment[j].float()
    if region.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=region.device)
        return empty, empty, torch.zeros(0, device=region.device)
    clusters = assign_i[:, region].argmax(dim=0)  # [R]
    candidate = assign_j[clusters] > cfg.weak_assign_threshold  # [R, n]
    feats_i = out.patch_features[i].float()[:, region]  # [C, R]
    cos = feats_i.T @ out.patch_features[j].float()  # [R, n]
    cos = cos.masked_fill(~candidate, float("-inf"))
    k = min(2, cos.shape[1])
    top, arg = cos.topk(k, dim=1)
    best, q = top[:, 0], arg[:, 0]
    second = top[:, 1] if k > 1 else torch.full_like(best, float("-inf"))
    ratio_ok = (second <= 0) | (best > cfg.weak_ratio * second)
    keep = torch.isfinite(best) & (best > cfg.weak_cos_threshold) & ratio_ok
    idx = torch.nonzero(keep).flatten()
    if idx.numel() > cfg.weak_max_pairs:
        idx = idx[best[idx].topk(cfg.weak_max_pairs).indices]
    else:
        idx = idx[best[idx].argsort(descending=True)]
    return region[idx], q[idx], best[idx]


def weak_supervision_loss(out: FoLOutput, labels: torch.Tensor, cfg: LossConfig | None = None
                          ) -> tuple[torch.Tensor, int]:
    """Mean of cos_patch * (1 - <D_i[p], D_j[q]>) over pseudo-correspondences (unweighted); (loss, pairs)."""
    cfg = cfg or LossConfig()
    _check_labels(labels, out.local_dense.shape[0])
    part = partner_indices(labels)
    dense = out.local_dense.float()
    _, gh, gw = out.region_mask.shape
    hl, wl = dense.shape[1:3]
    cells = (hl - 1) // (gh - 1) if gh > 1 else 1
    if cells * (gh - 1) != hl - 1 or cells * (gw - 1) != wl - 1:
        raise ConfigError(f"local grid {hl}x{wl} is not aligned with the patch grid {gh}x{gw}")
    terms = []
    for i in torch.nonzero(part >= 0).flatten().tolist():
        j = int(part[i])
        p, q, cos = weak_correspondences(out, i, j, cfg)
        if p.numel() == 0:
            continue
        ri, ci = _local_index(p, gw, cells)
        rj, cj = _local_index(q, gw, cells)
        dot = (dense[i, ri, ci] * dense[j, rj, cj]).sum(-1)
        terms.append(cos * (1 - dot))
    if not terms:
        return dense.sum() * 0.0, 0
    allt = torch.cat(terms)
    return allt.mean(), int(allt.numel())


# ------------------------------------------------------------------------------------------- total
def fol_loss(out: FoLOutput, labels: torch.Tensor, cfg: LossConfig | None = None) -> LossTerms:
    """All five terms and their weighted sum."""
    cfg = cfg or LossConfig()
    labels = labels.to(out.global_desc.device)
    zero = out.global_desc.float().sum() * 0.0
    ms, n_pos, n_neg = multi_similarity_loss(out.global_desc, labels, cfg) if cfg.ms_weight else (zero, 0, 0)
    local = local_triplet_loss(out, labels, cfg) if cfg.local_weight else zero
    sal = sal_loss(out)
    cel = cel_loss(out, labels, cfg) if cfg.cel_weight else zero
    weak, n_weak = weak_supervision_loss(out, labels, cfg) if cfg.weak_weight else (zero, 0)
    total = (cfg.ms_weight * ms + cfg.local_weight * local + cfg.sal_weight * sal + cfg.cel_weight * cel
             + cfg.weak_weight * weak)
    return LossTerms(total, ms, local, sal, cel, weak, n_pos, n_neg, n_weak)
