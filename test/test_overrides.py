"""node.overrides: the one NAME=VALUE parser of node parameters (evaluate-bag -p, node --set)."""

from __future__ import annotations

import argparse

import pytest

from fol_vpr_ros.cli.node import add_node_parser, node_arguments
from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.node import load_params
from fol_vpr_ros.node.overrides import OverrideError, parse_override, parse_overrides, ros_argument


@pytest.mark.parametrize(("text", "name", "value"), [
    ("min_rerank_score=30", "min_rerank_score", 30.0),  # an integer for a float parameter is that float
    ("min_rerank_score=12.5", "min_rerank_score", 12.5),
    ("top_k=50", "top_k", 50),
    (" top_k = 7 ", "top_k", 7),
    ("input_size=[224, 224]", "input_size", [224, 224]),
    ("publish_tf=false", "publish_tf", False),
    ("weights=random:0", "weights", "random:0"),
    ("loop_closure.session_id=2024", "loop_closure.session_id", "2024"),  # a string parameter keeps the text
    ("odometry.topic=", "odometry.topic", ""),
    ("odometry.topic=''", "odometry.topic", ""),
    ("use_sim_time=true", "use_sim_time", True),  # ROS's own parameter, passed on
])
def test_values_take_the_parameter_type(text, name, value):
    got = parse_override(text)
    assert got == (name, value) and type(got[1]) is type(value)


def test_parsed_overrides_load_strictly():
    over = parse_overrides(["min_rerank_score=30", "keyframe.min_distance_m=2", "top_k=8", "rerank_k=4"])
    p = load_params(None, overrides=over)  # strict typing: 30 alone would be refused for a float
    assert (p.min_rerank_score, p.keyframe.min_distance_m, p.top_k, p.rerank_k) == (30.0, 2.0, 8, 4)
    with pytest.raises(ConfigError, match=r"write 30\.0"):
        load_params(None, overrides={"min_rerank_score": 30})


@pytest.mark.parametrize(("text", "words"), [
    ("top_kk=5", ["top_kk=5", "unknown parameter 'top_kk'", "did you mean top_k"]),
    ("nothing_like_it=1", ["nothing_like_it", "no such node parameter"]),
    ("top_k=abc", ["top_k=abc", "not an integer", "parameter top_k"]),
    ("top_k=3.5", ["top_k=3.5", "not an integer"]),
    ("publish_tf=1", ["publish_tf=1", "true or false"]),
    ("keyframe.min_distance_m=true", ["keyframe.min_distance_m", "number"]),
    ("input_size=[224, x]", ["input_size", "list of integers"]),
    ("input_size=[1,", ["input_size", "not valid YAML"]),
    ("top_k", ["'top_k'", "NAME=VALUE"]),
    ("=3", ["NAME=VALUE"]),
])
def test_bad_overrides_are_one_line_naming_them(text, words):
    with pytest.raises(OverrideError) as info:
        parse_override(text)
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    assert isinstance(info.value, ConfigError) and isinstance(info.value, argparse.ArgumentTypeError)


def test_ros_arguments_keep_the_type():
    assert ros_argument("min_rerank_score", 30.0) == "min_rerank_score:=30.0"
    assert ros_argument("top_k", 50) == "top_k:=50"
    assert ros_argument("input_size", [224, 224]) == "input_size:=[224, 224]"
    assert ros_argument("publish_tf", False) == "publish_tf:=false"
    assert ros_argument("loop_closure.session_id", "2024") == 'loop_closure.session_id:="2024"'
    assert ros_argument("odometry.topic", "") == 'odometry.topic:=""'


def test_node_set_becomes_typed_ros_parameters(capsys):
    parser = argparse.ArgumentParser()
    add_node_parser(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["node", "--weights", "random:0", "--set", "min_rerank_score=30", "--set", "top_k=50",
                           "--ros-args", "-r", "image:=/cam", "--log-level", "debug"])
    assert a.overrides == [("min_rerank_score", 30.0), ("top_k", 50)]
    assert a.ros_args == ["-r", "image:=/cam", "--log-level", "debug"]  # as documented: ... --ros-args ARGS
    argv = node_arguments("p.yaml", None, a.weights, a.ros_args, a.overrides)
    assert argv == ["fol_vpr_node", "--ros-args", "--params-file", "p.yaml", "-p", "weights:=random:0",
                    "-p", "min_rerank_score:=30.0", "-p", "top_k:=50", "-r", "image:=/cam", "--log-level", "debug"]
    assert node_arguments(None, "m", None, []) == ["fol_vpr_node", "--ros-args", "-p", "map_path:=m"]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parser.parse_args(["node", "--set", "top_kk=5"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --set: top_kk=5: unknown parameter 'top_kk' (did you mean top_k?)" in err
