"""FAISS retrieval: exact search equals brute force, approximate kinds recall well, clear errors."""

from __future__ import annotations

import json
import warnings

import faiss
import numpy as np
import pytest

from fol_vpr_ros.errors import ConfigError, MapError
from fol_vpr_ros.mapping import INDEX_KINDS, GlobalIndex, IndexConfig, Keyframe, VprMap

D = 64


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """Small indexes: OpenMP spinning only costs time on a busy 2-core machine."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(n: int, seed: int = 0, clusters: int = 40):
    rng = np.random.default_rng(seed)
    centers = unit(rng.standard_normal((clusters, D)))
    x = unit(centers[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, D)) / np.sqrt(D))
    q = unit(x[rng.choice(n, min(n, 50), replace=False)] + 0.05 * rng.standard_normal((min(n, 50), D)))
    return x, q


def test_exact_equals_brute_force():
    rng = np.random.default_rng(3)
    x = unit(rng.standard_normal((2000, D)))
    q = unit(rng.standard_normal((20, D)))
    ids = 1000 + 3 * np.arange(2000)
    index = GlobalIndex(D)
    index.add(x[:1500], ids[:1500])
    index.add(x[1500:], ids[1500:])
    got_ids, got_sims = index.search(q, 10)
    sims = q @ x.T
    order = np.argsort(-sims, axis=1)[:, :10]
    np.testing.assert_array_equal(got_ids, ids[order])
    np.testing.assert_allclose(got_sims, np.take_along_axis(sims, order, 1), atol=1e-5)
    assert got_ids.dtype == np.int64 and got_sims.dtype == np.float32
    # restricted to a candidate mask, still exact
    mask = rng.random(2000) < 0.3
    got_ids, got_sims = index.search(q, 5, candidate_mask=mask)
    masked = np.where(mask, sims, -np.inf)
    order = np.argsort(-masked, axis=1)[:, :5]
    np.testing.assert_array_equal(got_ids, ids[order])
    np.testing.assert_allclose(got_sims, np.take_along_axis(sims, order, 1), atol=1e-5)


@pytest.mark.parametrize("config,min_recall", [
    (IndexConfig("ivf-flat", nlist=16, nprobe=4), 0.95),
    (IndexConfig("hnsw", hnsw_m=16, ef_construction=40, ef_search=32), 0.95),
    (IndexConfig("ivf-pq", nlist=8, nprobe=4, pq_m=16, pq_nbits=6, min_points_per_centroid=10), 0.3),
])
def test_approximate_recall(config, min_recall):
    x, q = clustered(3000)
    exact = GlobalIndex(D)
    exact.add(x)
    e_ids, e_sims = exact.search(q, 10)
    index = GlobalIndex(D, config)
    index.add(x)
    ids, sims = index.search(q, 10)
    assert index.active_kind == config.kind
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, e_ids)])
    assert recall >= min_recall, recall
    top1_found = np.mean([e[0] in a for a, e in zip(ids, e_ids)])
    assert top1_found >= 0.9, top1_found
    assert np.abs(sims[:, 0] - e_sims[:, 0]).max() < 0.25


def test_ivf_falls_back_to_exact_until_trained():
    x, q = clustered(1500, seed=1)
    config = IndexConfig("ivf-flat", nlist=16, nprobe=2)  # needs 16 * 39 = 624 vectors
    index = GlobalIndex(D, config)
    index.add(x[:300])
    with pytest.warns(UserWarning, match="needs 624 vectors to train"):
        ids, _ = index.search(q, 5)
    assert index.active_kind == "flat"
    np.testing.assert_array_equal(ids, np.argsort(-(q @ x[:300].T), axis=1)[:, :5])
    index.add(x[300:])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids, _ = index.search(q, 5)
    assert index.active_kind == "ivf-flat" and len(index) == 1500
    assert ids.max() < 1500 and (ids >= 300).any()


def test_config_errors():
    with pytest.raises(ConfigError, match="valid kinds: flat, ivf-flat, ivf-pq, hnsw"):
        IndexConfig("annoy")
    with pytest.raises(ConfigError, match="nprobe"):
        IndexConfig("ivf-flat", nlist=8, nprobe=9)
    with pytest.raises(ConfigError, match="pq_m=7 must divide the descriptor dim 64"):
        GlobalIndex(D, IndexConfig("ivf-pq", pq_m=7))
    assert IndexConfig.from_spec("ivf-pq:nlist=512, pq_m=32") == IndexConfig("ivf-pq", nlist=512, pq_m=32)
    with pytest.raises(ConfigError, match="unknown index parameter"):
        IndexConfig.from_spec("hnsw:efsearch=3")
    assert set(INDEX_KINDS) == {"flat", "ivf-flat", "ivf-pq", "hnsw"}
    if not hasattr(faiss, "StandardGpuResources"):
        with pytest.raises(ConfigError, match="no GPU support"):
            GlobalIndex(D, device="cuda")
    with pytest.raises(ConfigError, match="'tpu'"):
        GlobalIndex(D, device="tpu")


def test_search_errors():
    index = GlobalIndex(D)
    with pytest.raises(MapError, match="empty"):
        index.search(np.ones(D, np.float32), 1)
    x, q = clustered(30)
    index.add(x)
    with pytest.raises(ConfigError, match=r"k=31 is larger than the map \(30 keyframes\)"):
        index.search(q, 31)
    ids, sims = index.search(q[:2], 31, allow_fewer=True)
    assert ids.shape == (2, 30) and np.all(np.diff(sims, axis=1) <= 1e-6)
    with pytest.raises(ConfigError, match=r"shape \[n, 64\]"):
        index.search(np.ones((2, 3), np.float32), 1)


@pytest.mark.parametrize("config", [IndexConfig("hnsw", hnsw_m=8, ef_construction=20),
                                    IndexConfig("ivf-flat", nlist=8, nprobe=3)])
def test_map_saves_and_reloads_approximate_index(tmp_path, config):
    x, q = clustered(1200, seed=2)
    rng = np.random.default_rng(0)
    m = VprMap.create(tmp_path / "m", arch="vitb14", input_size=(322, 322), model_hash="synthetic:0",
                      descriptor_dim=D, index=config)
    local = [unit(rng.standard_normal((3, 128))) for _ in range(len(x))]
    rc = [np.zeros((3, 2), np.int64)] * len(x)
    m.add([Keyframe(stamp_ns=i) for i in range(len(x))], x, local, rc)
    ids, sims = m.search(q, 5)
    m.save()
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["index_file"] == "index.faiss" and manifest["index_active"] == config.kind
    m2 = VprMap.open(tmp_path / "m")
    assert m2.index.active_kind == config.kind and m2.index_config == config
    ids2, sims2 = m2.search(q, 5)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_allclose(sims, sims2)
    # switch to exact search on open: rebuilt from global.npy
    m3 = VprMap.open(tmp_path / "m", index=IndexConfig())
    assert m3.index.active_kind == "flat" and m3.dirty
    ids3, sims3 = m3.search(q, 5)
    brute = q @ x.T
    np.testing.assert_array_equal(ids3, np.argsort(-brute, axis=1)[:, :5])
    np.testing.assert_allclose(sims3, -np.sort(-brute, axis=1)[:, :5], atol=1e-5)
    # and back to an approximate kind, built from global.npy in chunks
    m4 = VprMap.open(tmp_path / "m", index=IndexConfig("hnsw", hnsw_m=8))
    assert m4.index.active_kind == "hnsw" and len(m4.index) == len(x)
    assert (m4.search(q, 1)[0][:, 0] == ids3[:, 0]).mean() > 0.9
    # a damaged index file is refused with its name
    data = (tmp_path / "m" / "index.faiss").read_bytes()
    (tmp_path / "m" / "index.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(MapError, match=r"index\.faiss"):
        VprMap.open(tmp_path / "m")


def test_untrained_index_is_not_stored(tmp_path):
    x, _ = clustered(100, seed=4)
    m = VprMap.create(tmp_path / "m", arch="vitb14", input_size=(322, 322), model_hash="synthetic:0",
                      descriptor_dim=D, index=IndexConfig("ivf-flat", nlist=16))
    m.add([Keyframe(stamp_ns=i) for i in range(len(x))], x, [np.zeros((0, 128), np.float32)] * len(x),
          [np.zeros((0, 2), np.int64)] * len(x))
    m.save()
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["index_file"] is None and manifest["index_active"] == "flat"
    assert manifest["index"]["kind"] == "ivf-flat"
    m2 = VprMap.open(tmp_path / "m")
    with pytest.warns(UserWarning, match="searching exactly"):
        ids, _ = m2.search(x[:3], 1)
    assert list(ids[:, 0]) == [0, 1, 2]
    assert m2.local_rows(5)[0].shape == (0, 128)
