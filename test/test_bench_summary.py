"""`fol-vpr bench summary`: one table, its structure, and ratios taken from the rows of the same run."""

from __future__ import annotations

import importlib.util
import json

import pytest

from fol_vpr_ros.bench.summary_bench import COLUMNS, FP32, ORT, SummaryOptions, bench_summary, default_arch
from fol_vpr_ros.cli.main import main
from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.node.params import NodeParams

SIZES = (12, 20)
RERANK_K = 2
HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def _stages(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["stage"], []).append(row)
    return out


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """One tiny run through the CLI: ViT-S/14 with one block at 224, two re-ranked candidates, tiny maps."""
    out = tmp_path_factory.mktemp("summary")
    argv = ["bench", "summary", "--archs", "vits14", "--resize", "224", "224", "--depth", "1", "--device", "cpu",
            "--sizes", *map(str, SIZES), "--repeats", "1", "--rerank-k", str(RERANK_K), "--regimes", "sparse",
            "dense", "--precisions", "bf16", "fp16", "--emulated", "--out", str(out)]
    assert main(argv) == 0
    payload = json.loads((out / "summary.json").read_text())
    return payload, (out / "summary.md").read_text()


def test_summary_table_has_one_row_per_stage_and_variant(summary: tuple[dict, str]) -> None:
    payload, md = summary
    assert payload["columns"] == COLUMNS
    assert "| " + " | ".join(COLUMNS) + " |" in md
    stages = _stages(payload["rows"])
    describe = [s for s in stages if s.startswith("describe b1, 224 x 224")]
    rerank = [s for s in stages if s.startswith(f"re-rank K={RERANK_K}, ")]
    query = [s for s in stages if s.startswith("query: ")]
    assert len(describe) == 1 and len(stages) == 1 + 2 + len(SIZES)
    assert [s.rsplit(", ", 1)[1] for s in rerank] == ["sparse", "dense"]
    assert [int(s.split()[1]) for s in query] == list(SIZES)
    low = ["bf16", "fp16"]
    variants = {s: [r["variant"].split(" (")[0] for r in rows] for s, rows in stages.items()}
    ort = [ORT] if HAS_ORT else []
    assert variants[describe[0]] == [FP32, *low, *ort]
    for s in rerank:
        assert variants[s] == [FP32, *low, "fp32 matmul floor"]
    for s in query:
        assert variants[s] == [FP32, *low, *ort]
    if not HAS_ORT:
        assert any("onnxruntime rows skipped" in n for n in payload["notes"])
    assert all(r["device"] == "cpu" and r["arch"] == "vits14 (1 blocks)" for r in payload["rows"])


def test_ratios_come_from_the_fp32_row_of_the_same_stage(summary: tuple[dict, str]) -> None:
    payload, _ = summary
    for stage, rows in _stages(payload["rows"]).items():
        (ref,) = [r for r in rows if r["variant"] == FP32]
        assert ref["vs fp32"] == pytest.approx(1.0)
        for r in rows:
            assert r["ms"] > 0
            assert r["fp32 ms"] == ref["ms"], stage
            assert r["vs fp32"] == pytest.approx(ref["ms"] / r["ms"])
        if stage.startswith("re-rank"):
            (floor,) = [r for r in rows if r["variant"] == "fp32 matmul floor"]
            for r in rows:
                assert r["x fp32 floor"] == pytest.approx(r["ms"] / floor["ms"])


def test_low_precision_rerank_counts_equal_fp32(summary: tuple[dict, str]) -> None:
    payload, _ = summary
    rows = [r for r in payload["rows"] if r["stage"].startswith("re-rank")]
    kernels = [r for r in rows if r["variant"] not in (FP32, "fp32 matmul floor")]
    assert kernels and all(r["counts equal"] is True for r in kernels)
    pairs = {(r["stage"], r["variant"]): r["pairs"] for r in rows if "pairs" in r}
    for (stage, _variant), n in pairs.items():
        assert n == pairs[(stage, FP32)]


def test_query_rows_split_their_time_into_steps(summary: tuple[dict, str]) -> None:
    payload, _ = summary
    for r in (r for r in payload["rows"] if r["stage"].startswith("query")):
        assert r["detail"].startswith("describe ") and " + search " in r["detail"] and " + re-rank " in r["detail"]
        assert r["describe ms"] > 0 and r["re-rank ms"] > 0


def test_defaults_come_from_the_node_and_bad_options_fail_clearly() -> None:
    arch = NodeParams().arch
    assert default_arch() == (arch if arch != "auto" else "vitb14")
    with pytest.raises(ConfigError, match="precisions"):
        SummaryOptions(precisions=("fp32",))
    with pytest.raises(ConfigError, match="regimes"):
        SummaryOptions(regimes=("medium",))
    with pytest.raises(ConfigError, match="sizes: maps of \\[3\\] keyframes"):
        bench_summary(SummaryOptions(archs=["vits14"], size=(224, 224), depth=1, sizes=(3,), rerank_k=3,
                                     devices=["cpu"]))
