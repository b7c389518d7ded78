"""`fol-vpr bench verify` on a bundled set: one row per set, PR without and with verification from one run."""

from __future__ import annotations

import json

from fol_vpr_ros.bench.verify_bench import bench_verify


def test_bench_verify_writes_a_row_per_set_with_both_curves(shared_data, tmp_path) -> None:
    table = bench_verify(shared_data, sets=("corridor",), arch="vits14", size=(224, 224), depth=1, max_db=6,
                         max_queries=4, rerank_k=3, out_dir=tmp_path, progress=False)
    assert len(table.rows) == 1
    row = table.rows[0]
    assert row["set"].startswith("corridor (6 db, ")
    correct, of_correct = (int(x) for x in row["correct best passing"].split("/"))
    wrong, of_wrong = (int(x) for x in row["wrong best passing"].split("/"))
    queries = int(row["set"].split(", ")[1].split()[0])
    assert of_correct + of_wrong == queries and 0 <= correct <= of_correct and 0 <= wrong <= of_wrong
    assert row["verify ms/query"] > 0
    written = json.loads((tmp_path / "verify.json").read_text())
    assert written["rows"][0]["set"] == row["set"]
    assert any("SYNTHETIC" in n for n in table.notes)
