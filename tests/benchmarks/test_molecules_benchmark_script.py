"""The molecules benchmark script runs its smallest budget end to end (a 200-molecule QM9 subset) and writes its results."""

from __future__ import annotations

import json
import math

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("molecules/run.py")


def _finite(v) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def test_quick_budget_end_to_end_then_resumes(bench, tmp_path):
    argv = ["--budget", "quick", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    bench.main(argv)
    res = json.loads((tmp_path / "out" / "qm9_noh_quick_cpu.json").read_text())
    md = (tmp_path / "out" / "qm9_noh_quick_cpu.md").read_text()
    b = bench.BUDGETS["quick"]
    assert res["complete"] and res["budget"]["name"] == "quick" and res["command"].endswith(" ".join(argv))
    assert set(res["recipes"]) == {"molecules/edm", "molecules/eqgat"}
    for name, r in res["recipes"].items():
        src = "model" if name == "molecules/eqgat" else "edm-lookup"
        t = r["train"]
        assert t["steps"] == b["train_steps"] and t["parameters"] > 0 and t["seconds"] > 0 and _finite(t["seconds_per_step"])
        m = r["main"]
        assert (m["num"], m["steps"], m["batch_size"]) == (b["num_samples"], b["sample_steps"], 64)
        assert m["sample_seconds"] > 0 and _finite(m["molecules_per_second"]) and m["molecules_per_second"] > 0
        met = m["metrics"]
        assert met["n_molecules"] == b["num_samples"]
        for k in (f"validity/connected/{src}", f"validity/largest_fragment/{src}", f"connected/{src}", f"valid_and_unique/{src}",
                  "atom_type_tv"):
            assert _finite(met[k]), k
        for k in (f"uniqueness/{src}", f"bond_length_w1/{src}", f"bond_angle_w1/{src}", f"fcd/{src}", f"nspdk/{src}"):
            assert isinstance(met[k], float), k  # NaN where undefined (e.g. no valid molecule from a 20-step model)
        assert [p["steps"] for p in r["sweep"]] == b["sweep_steps"]
        for p in r["sweep"]:
            assert p["num"] == b["sweep_samples"] and _finite(p["molecules_per_second"]) and p["metrics"]["n_molecules"] == b["sweep_samples"]
        assert name in md and r["cli"] in md
    assert "data row (ours)" in md and "EDM (MiDi Table 4)" in md and "96.8" in md and "Partial" not in md

    # a second call reuses the trained runs and the cached sections: same numbers, no training
    bench.main(argv)
    again = json.loads((tmp_path / "out" / "qm9_noh_quick_cpu.json").read_text())
    for name in res["recipes"]:
        assert again["recipes"][name]["train"]["calls"] == 1
        assert again["recipes"][name]["main"] == res["recipes"][name]["main"]


@pytest.mark.slow
def test_2d_quick_budget_end_to_end(load_benchmark, tmp_path):
    """``run_2d.py --budget quick``: both 2D recipes train, sample, and are scored in both decodings next to a data row."""
    bench2d = load_benchmark("molecules/run_2d.py")
    argv = ["--budget", "quick", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    res = bench2d.main(argv)
    assert res["complete"] and set(res["recipes"]) == {"molecules/digress", "molecules/gdss"}
    b = bench2d.BUDGETS["quick"]
    for r in res["recipes"].values():
        met = r["main"]["metrics"]
        assert met["n_molecules@raw"] == met["n_molecules@valency-corrected"] == b["num_samples"]
        assert met["validity/largest_fragment/model@valency-corrected"] >= met["validity/largest_fragment/model@raw"]
        assert r["train"]["steps"] == b["train_steps"] and r["main"]["molecules_per_second"] > 0
    data = res["data_row"]["metrics"]
    assert data["validity/largest_fragment/model@raw"] == 1.0 and _finite(data["fcd/model@raw"]) and _finite(data["nspdk/model@raw"])
    md = (tmp_path / "out" / "qm9_2d_quick_cpu.md").read_text()
    assert "validity w/o correction" in md and "GDSS" in md

    # --sweep on the same trained runs: one point per step count, saved, and a finished point is not redone
    sw = bench2d.SWEEP["quick"]
    out = bench2d.main([*argv, "--sweep"])["sweep"]
    assert set(out) == {"molecules/digress", "molecules/gdss"}
    for name, r in out.items():
        assert sorted(r["points"], key=int) == [str(s) for s in sw["steps"]]
        for p in r["points"].values():
            assert p["num"] == p["metrics"]["n_molecules@raw"] == sw["samples"] and p["molecules_per_second"] > 0
    again = bench2d.main([*argv, "--sweep"])["sweep"]
    for name in out:  # same timings = the points were read back, not redrawn (metrics may hold NaN, which != NaN)
        assert {k: p["sample_seconds"] for k, p in again[name]["points"].items()} == \
            {k: p["sample_seconds"] for k, p in out[name]["points"].items()}
    md = (tmp_path / "out" / "qm9_2d_quick_sweep.md").read_text()
    assert all(f"{s} steps" in md for s in sw["steps"]) and "molecules / s" in md
