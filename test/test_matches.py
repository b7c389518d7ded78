"""mutual_matches: the pairs rerank.mnn_scores counts, for one candidate."""

from __future__ import annotations

import glob

import numpy as np
import pytest

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.pipeline.matches import mutual_matches
from fol_vpr_ros.pipeline.rerank import mnn_scores


def _unit(rng, n, d=32):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _check(q, nq, c, nc, thr):
    qi, ci = mutual_matches(q, nq, c, nc, thr)
    assert len(qi) == len(ci) == int(mnn_scores(q, nq, c[None], [nc], thr)[0])
    if len(qi):
        sim = c[:nc] @ q[:nq].T
        assert np.all(sim[ci, qi] > np.float32(thr))
        assert np.array_equal(np.argmax(sim[ci], axis=1), qi)
        assert np.array_equal(np.argmax(sim[:, qi], axis=0), ci)
    return qi, ci


@pytest.mark.parametrize("seed", range(6))
def test_random_rows_match_the_counts(seed):
    rng = np.random.default_rng(seed)
    q, c = _unit(rng, 70), _unit(rng, 90)
    c[:30] = q[:30] + 0.05 * _unit(rng, 30)  # some true pairs
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    for thr in (-0.5, 0.0, 0.3, 0.7, 0.95):
        _check(q, 60 + seed, c, 80, thr)


def test_ties_take_the_first_index():
    q = np.eye(4, 8, dtype=np.float32)
    c = np.concatenate([q, q]).astype(np.float32)  # every query row has two equal nearest candidates
    qi, ci = _check(q, 4, c, 8, 0.5)
    assert np.array_equal(ci, [0, 1, 2, 3]) and np.array_equal(qi, [0, 1, 2, 3])
    q2 = np.concatenate([q[:1], q[:1]])  # two equal query rows: the first one is matched
    qi, ci = _check(q2, 2, c, 8, 0.5)
    assert qi.tolist() == [0] and ci.tolist() == [0]


def test_threshold_is_strict():
    q = np.array([[1.0, 0.0]], np.float32)
    c = np.array([[0.6, 0.8]], np.float32)
    dot = float(np.float32(0.6))
    assert len(_check(q, 1, c, 1, dot)[0]) == 0
    assert len(_check(q, 1, c, 1, np.nextafter(np.float32(dot), np.float32(0)))[0]) == 1


def test_empty_rows_and_bad_input():
    rng = np.random.default_rng(1)
    q, c = _unit(rng, 5), _unit(rng, 5)
    for nq, nc in ((0, 5), (5, 0), (0, 0)):
        qi, _ = _check(q, nq, c, nc, 0.1)
        assert qi.dtype == np.int64 and len(qi) == 0
    with pytest.raises(ConfigError, match="query_count"):
        mutual_matches(q, 6, c, 5, 0.1)
    c[1, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        mutual_matches(q, 5, c, 5, 0.1)


def test_described_image_pair(shared_data):
    from fol_vpr_ros.pipeline.describe import Describer, DescriberConfig

    files = sorted(glob.glob(str(shared_data / "gardenspoint_sample10_vpr_tutorial" / "*" / "0.jpg")))
    d = Describer.from_config(DescriberConfig("random:0", input_size=(224, 224), depth=1))
    a, b = d.describe_files(files, progress=False)
    for thr in (0.5, 0.7):
        qi, _ = _check(a.local, a.local_count, b.local, b.local_count, thr)
        assert len(qi) > 0
