"""The pose covariance model: fitted on scored matches, a wrong match gets the sigma of wrong matches."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.evaluation.covariance_fit import calibration_table, fit_pose_covariance
from fol_vpr_ros.node.pose_covariance import (
    DEFAULT_COVARIANCE,
    PoseCovarianceModel,
    load_covariance_model,
    save_covariance_model,
)


def _matches(seed: int = 0):
    """True matches score 80-400 with metre errors; false ones 5-90 with errors of kilometres."""
    rng = np.random.default_rng(seed)
    ts, te = rng.uniform(80, 400, 300), np.abs(rng.normal(0, 6.0, 300))
    fs, fe = rng.uniform(5, 90, 200), rng.uniform(500, 12_000, 200)
    return np.concatenate([ts, fs]), np.concatenate([te, fe]), te, fe


def test_fit_separates_true_from_false_and_measures_their_errors():
    scores, errors, te, fe = _matches()
    m = fit_pose_covariance(scores, errors, 25.0, source="test")
    assert (m.samples_true, m.samples_false) == (300, 200)
    assert m.p_true(350) > 0.95 and m.p_true(20) < 0.05 and m.b > 0
    ps = [m.p_true(s) for s in range(0, 500, 10)]
    assert all(b >= a for a, b in itertools.pairwise(ps))  # monotonic in the score
    assert m.sigma_true_m == pytest.approx(math.sqrt(np.mean(te**2)))
    assert m.sigma_false_m == pytest.approx(math.sqrt(np.mean(fe**2)))
    # the case: a match 9.9 km wrong with a weak score is no longer published at 0.8 m
    sp, sr = m.sigmas(25)
    assert sp > 1000.0 and sr > 1.0
    strong, _ = m.sigmas(380)
    assert strong < 0.2 * sp


def test_one_class_only_keeps_the_prior_curve():
    m = fit_pose_covariance([100, 200, 300], [1.0, 2.0, 3.0], 25.0)
    assert (m.a, m.b) == (DEFAULT_COVARIANCE.a, DEFAULT_COVARIANCE.b) and m.samples_false == 0
    assert m.sigma_true_m == pytest.approx(math.sqrt((1 + 4 + 9) / 3))
    assert m.sigma_false_m >= m.sigma_true_m


def test_default_prior_is_conservative():
    weak, _ = DEFAULT_COVARIANCE.sigmas(10)
    assert weak > 500.0 and DEFAULT_COVARIANCE.sigmas(-1)[0] == pytest.approx(DEFAULT_COVARIANCE.sigma_false_m)
    assert DEFAULT_COVARIANCE.sigmas(-1)[1] == pytest.approx(math.pi / math.sqrt(3))
    assert "| 60 | 0.500 |" in calibration_table(DEFAULT_COVARIANCE)


def test_save_load_round_trip_and_bad_files(tmp_path):
    scores, errors, _, _ = _matches(1)
    m = fit_pose_covariance(scores, errors, 25.0, synthetic=True)
    path = save_covariance_model(m, tmp_path / "cov.yaml")
    assert "SYNTHETIC WEIGHTS" in path.read_text()
    assert load_covariance_model(path) == m
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    with pytest.raises(ConfigError, match=r"pose.covariance_file .*bad.yaml: not YAML"):
        load_covariance_model(tmp_path / "bad.yaml")
    (tmp_path / "extra.yaml").write_text(path.read_text() + "colour: blue\n")
    with pytest.raises(ConfigError, match=r"extra.yaml: unknown field\(s\) colour"):
        load_covariance_model(tmp_path / "extra.yaml")
    (tmp_path / "neg.yaml").write_text(path.read_text().replace(f"sigma_true_m: {m.sigma_true_m}", "sigma_true_m: -1"))
    with pytest.raises(ConfigError, match=r"neg.yaml: .*sigma_true_m must be > 0"):
        load_covariance_model(tmp_path / "neg.yaml")
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot be read"):
        load_covariance_model(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="finite"):
        PoseCovarianceModel(a=math.nan, b=1, sigma_true_m=1, sigma_false_m=2, orientation_sigma_true_rad=0.1,
                            true_radius_m=25)
