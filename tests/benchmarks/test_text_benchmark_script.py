"""The text benchmark script runs end to end (quick budget) and its equal-compute rule holds."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("text/run.py")


def test_quick_equal_compute_run(bench, tmp_path):
    r = bench.main(["--out", str(tmp_path), "--quick", "--equal-compute", "--radd-steps", "4", "--cache-num", "1",
                    "--steps", "8", "--samplers", "ancestral,cached"])
    steps, batch = r["train_steps"], r["batch_size"]
    mdlm, ar = r["params"] * steps["mdlm"] * batch, r["params_ar"] * steps["ar"] * batch
    # equal parameters x steps x batch, up to rounding the AR step count to a whole step
    assert steps["ar"] > steps["mdlm"] and abs(mdlm - ar) <= r["params_ar"] * batch / 2
    assert steps["radd"] == 4 and r["radd_cache_batch1"]["identical_samples"]
    assert {"mdlm_upper_bound", "ar", "radd_upper_bound"} <= set(r["test_bpc"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [s["sampler"] for s in saved["sampling"]] == ["ancestral", "cached"]
    assert "params × steps × batch" in (tmp_path / "results.md").read_text()
    # a second call finds the finished runs and does not train again
    again = bench.main(["--out", str(tmp_path), "--quick", "--equal-compute", "--radd-steps", "4", "--cache-num", "1",
                        "--steps", "8", "--samplers", "ancestral"])
    assert again["train_steps"] == steps and again["test_bpc"]["ar"] == r["test_bpc"]["ar"]
