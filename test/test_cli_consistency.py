"""One command line: the same model options and defaults everywhere (and the node's where they meet it), each
line printed once, a synthetic run announced once at the end, one number format in the printed tables."""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import logging
import re

import numpy as np
import pytest
from PIL import Image

from fol_vpr_ros.cli import build_parser, main
from fol_vpr_ros.cli.common import ARCH_HELP, DESCRIBER_DEFAULTS, PRECISION_CHOICES, WEIGHTS_HELP, WEIGHTS_METAVAR
from fol_vpr_ros.cli.evaluate import recall_table
from fol_vpr_ros.console import fraction, percent
from fol_vpr_ros.jobs import demo_images as demo
from fol_vpr_ros.jobs import evaluate as evaluate_job
from fol_vpr_ros.jobs.build_map_bag import build_map_from_bag
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model
from fol_vpr_ros.node.packaged_params import default_params_path
from fol_vpr_ros.node.params import NodeParams, load_params
from fol_vpr_ros.stamps import NS_PER_SEC as NS
from fol_vpr_ros.testing.bagfactory import write_image_bag

TOPIC = "/camera/image_raw"
IDENTITY = (0.0, 0.0, 0.0, 1.0)
# The commands that use a model, with the other arguments they need to get past the parser.
MODEL_COMMANDS = {
    "describe": ["describe", "--out", "d.npz", "x.jpg"],
    "build-map": ["build-map", "--images", "im", "--out", "m"],
    "evaluate": ["evaluate", "--map", "m", "--queries", "q", "--ground-truth", "utm", "--out", "r"],
    "evaluate-bag": ["evaluate-bag", "--bag", "b", "--image-topic", TOPIC, "--map", "m", "--out", "r"],
    "demo": ["demo"],
    "demo-images": ["demo-images"],
    "export onnx": ["export", "onnx", "--out", "m.onnx"],
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    return str(save_checkpoint(synthetic_model(cfg, seed=6), tmp_path_factory.mktemp("w") / "tiny.pth"))


def _parser(*names):
    parser = build_parser()
    for name in names:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def _actions(*names):
    return {a.option_strings[0]: a for a in _parser(*names)._actions if a.option_strings}


# --- the same model options and defaults -------------------------------------------------------------


@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
def test_every_model_command_requires_weights(command, capsys):
    with pytest.raises(SystemExit) as info:
        main(MODEL_COMMANDS[command])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"--weights {WEIGHTS_METAVAR}" in " ".join(err.split())  # the usage line says what to give
    assert "required: --weights" in err and "Traceback" not in err


@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
def test_every_model_command_shares_the_model_options(command):
    actions = _actions(*command.split())
    assert actions["--weights"].help.startswith(WEIGHTS_HELP) and actions["--weights"].metavar == WEIGHTS_METAVAR
    assert actions["--arch"].default == DESCRIBER_DEFAULTS.arch and actions["--arch"].help == ARCH_HELP
    if "--device" in actions:
        assert actions["--device"].default == DESCRIBER_DEFAULTS.device
    if "--precision" in actions and command != "export onnx":  # an exported graph is fp32 or fp16
        assert tuple(actions["--precision"].choices) == PRECISION_CHOICES


def test_build_map_keyframes_are_spaced_as_the_node_spaces_them():
    shipped = load_params(default_params_path()).keyframe
    assert shipped == NodeParams().keyframe  # config/localize.yaml and the node's defaults agree
    actions = _actions("build-map")
    assert actions["--min-interval"].default == shipped.min_interval_sec == 0.5
    assert actions["--min-distance"].default == shipped.min_distance_m == 1.0
    assert actions["--min-angle"].default == shipped.min_angle_deg == 15.0
    defaults = {k: v.default for k, v in inspect.signature(build_map_from_bag).parameters.items()}
    assert (defaults["min_interval"], defaults["min_distance"], defaults["min_angle"]) == (0.5, 1.0, 15.0)


def test_evaluate_reranks_as_many_as_the_node(ckpt, shared_data, tmp_path, monkeypatch):
    from fol_vpr_ros.evaluation.ground_truth import bundled_ground_truth, write_ground_truth

    assert evaluate_job.NODE_RERANK_K == NodeParams().rerank_k == load_params(default_params_path()).rerank_k
    action = _actions("evaluate")["--rerank-k"]
    assert action.default is None
    assert f"default: {NodeParams().rerank_k}, the node's rerank_k, at most --top-k" in " ".join(action.help.split())
    map_dir, queries, gt = bundled_ground_truth(shared_data, "gardenspoint")
    csv = write_ground_truth(gt, tmp_path / "gp.csv")
    assert main(["build-map", "--weights", ckpt, "--resize", "224", "224", "--images", str(map_dir),
                 "--out", str(tmp_path / "map"), "-q"]) == 0
    monkeypatch.setattr(evaluate_job, "NODE_RERANK_K", 3)  # a node re-ranking fewer than the map holds

    def config(out, *extra):
        assert main(["evaluate", "--weights", ckpt, "--map", str(tmp_path / "map"), "--queries", str(queries),
                     "--ground-truth", str(csv), "--out", str(tmp_path / out), "-q", *extra]) == 0
        return json.loads((tmp_path / out / "summary.json").read_text())["config"]

    default = config("r1")
    assert (default["top_k"], default["rerank_k"]) == (10, 3)
    assert config("r2", "--top-k", "2")["rerank_k"] == 2  # never more than retrieved
    assert config("r3", "--rerank-k", "0")["rerank_k"] == 0


# --- each line once ------------------------------------------------------------------------------------


def _odometry_bag(path, shared_data, n=6, dt=0.25, speed=2.0):
    """Real Nordland frames every ``dt`` s, the robot driving straight at ``speed`` m/s (odometry at each frame)."""
    files = sorted((shared_data / "nordland_seqslam_64x32" / "summer").glob("*.png"))[:n]
    frames = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    stamps = [NS + round(k * dt * NS) for k in range(n)]
    odom = [(s, (speed * k * dt, 0.0, 0.0), IDENTITY) for k, s in enumerate(stamps)]
    return write_image_bag(path, frames, stamps, odometry=odom, storage="mcap")


def test_build_map_bag_prints_its_summary_once(ckpt, shared_data, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    bag = _odometry_bag(tmp_path / "bag", shared_data)
    assert main(["build-map", "--weights", ckpt, "--resize", "224", "224", "--bag", str(bag), "--image-topic", TOPIC,
                 "--out", str(tmp_path / "map"), "-q"]) == 0
    out, err = capsys.readouterr()
    assert out.count("keyframes in the map") == 1 and "keyframes in the map" not in err + caplog.text
    # 0.5 m between frames: the node's gate (0.5 s AND 1 m or 15 deg) keeps every second one
    assert "keyframes in the map  3  (min distance 1 m, min angle 15 deg, min interval 0.5 s)" in out
    assert "SYNTHETIC" not in out  # a checkpoint file
    with pytest.raises(SystemExit):
        main(["build-map", "--bag", str(bag), "--image-topic", TOPIC, "--out", str(tmp_path / "m2"), "-q"])


def test_build_map_lists_a_skipped_image_once(ckpt, tmp_path, capsys, caplog):
    folder = tmp_path / "im"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "2.png").write_bytes(b"\x89PNG\r\n\x1a\ncorrupt")
    caplog.set_level(logging.INFO)
    assert main(["build-map", "--weights", ckpt, "--resize", "224", "224", "--images", str(folder),
                 "--out", str(tmp_path / "map"), "-q"]) == 0
    out = capsys.readouterr().out
    bad = str(folder / "2.png")
    assert "1 image(s) skipped" in out and sum(bad in line for line in out.splitlines()) == 1
    assert f"skipped {bad}: cannot decode image" in out and f"{bad}: {bad}" not in out
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and "2.png" in r.getMessage()]


def test_demo_images_says_synthetic_once_at_the_end(shared_data, tmp_path, monkeypatch, capsys, caplog):
    """One model for the whole demo (describe, map, evaluate): one warning, the last thing printed, + the file."""
    monkeypatch.setattr(demo, "DEMO_SETS", (("gardenspoint_sample10_vpr_tutorial", "query", 2),))
    monkeypatch.setattr(demo, "DEMO_RETRIEVAL", ("gardenspoint",))
    monkeypatch.setattr(demo, "DescriberConfig", functools.partial(demo.DescriberConfig, depth=1))  # a small model
    caplog.set_level(logging.INFO)
    out_dir = tmp_path / "d"
    assert main(["demo-images", "--weights", "random:0", "--data", str(shared_data), "--out", str(out_dir),
                 "--resize", "224", "224", "-q"]) == 0
    out, err = capsys.readouterr()
    everything = out + err + caplog.text
    assert everything.count("SYNTHETIC WEIGHTS") == 1, everything
    assert out.rstrip().splitlines()[-3].startswith("SYNTHETIC WEIGHTS: the regions and recalls above")
    assert "meaningless" in (out_dir / "SYNTHETIC_WEIGHTS.txt").read_text()
    row = next(line for line in out.splitlines() if line.startswith("gardenspoint "))
    assert len(re.findall(r"\d+\.\d %", row)) == 4  # R@1 and R@5, global and re-ranked, in percent


def test_evaluate_bag_prints_its_table_once(ckpt, shared_data, tmp_path, capsys, caplog):
    bag = _odometry_bag(tmp_path / "bag", shared_data, n=4, dt=1.0, speed=10.0)
    assert main(["build-map", "--weights", ckpt, "--resize", "224", "224", "--bag", str(bag), "--image-topic", TOPIC,
                 "--out", str(tmp_path / "map"), "-q"]) == 0
    capsys.readouterr()
    caplog.set_level(logging.INFO)
    assert main(["evaluate-bag", "--weights", ckpt, "--bag", str(bag), "--image-topic", TOPIC, "--map",
                 str(tmp_path / "map"), "--out", str(tmp_path / "rep"), "--examples", "0", "--recall-values", "1",
                 "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.count("mode localize") == 1 and "mode localize" not in caplog.text
    header = next(line for line in out.splitlines() if "PR AUC" in line).split()
    assert header == ["threshold", "R@1", "R@2", "PR", "AUC", "R@P100"]
    for line in out.splitlines():
        if re.match(r"^\s+\d+ m ", line):  # '5 m  100.0 %  100.0 %  0.875  50.0 %'
            cells = re.findall(r"\d+\.\d %|\d\.\d{3}|-", line.split(" m ", 1)[1])
            assert len(cells) == 4, line
            assert re.fullmatch(r"\d\.\d{3}|-", cells[2]), line  # PR AUC: a fraction


# --- one number format ------------------------------------------------------------------------------


def test_one_number_format():
    assert (percent(62.5), percent(100.0), percent(0.0), percent(None), percent(float("nan"))) == (
        "62.5 %", "100.0 %", "0.0 %", "-", "-")
    assert (fraction(0.0214), fraction(1.0), fraction(None), fraction(float("nan"))) == ("0.021", "1.000", "-", "-")
    table = recall_table({1: 62.5, 5: 100.0}, {1: 75.0, 5: 100.0}).splitlines()
    assert table[0].split() == ["R@1", "R@5"]
    assert table[1].split() == ["global", "62.5", "%", "100.0", "%"]
    assert table[2].split() == ["rerank", "75.0", "%", "100.0", "%"]
    assert len(recall_table({1: 50.0}, None).splitlines()) == 2
