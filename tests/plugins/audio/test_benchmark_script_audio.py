"""benchmarks/audio/run.py at its quick budget on generated data: every row is written, baselines beat the mixture."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "audio" / "run.py"


@pytest.mark.slow
def test_quick_budget_on_synthetic_data(tmp_path):
    spec = importlib.util.spec_from_file_location("benchmarks_audio_run", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    r = mod.main(["--budget", "quick", "--data", "synthetic", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["methods"]) >= {"noisy", "spectral subtraction", "Wiener (decision-directed)",
                                     "SGMSE+ ouve (pc 2)", "SGMSE+ sb-ve (ddim 2)", "UDiffSE (EM 2 x ddpm 2)"}
    assert "| method | NFE | RTF |" in (tmp_path / "results.md").read_text()
    noisy, wiener = r["methods"]["noisy"]["summary"]["all"], r["methods"]["Wiener (decision-directed)"]["summary"]["all"]
    assert wiener["si_sdr"] > noisy["si_sdr"]
    assert r["methods"]["SGMSE+ ouve (pc 2)"]["nfe"] == 4
    udiffse = r["methods"]["UDiffSE (EM 2 x ddpm 2)"]
    assert udiffse["nfe"] == 2 * 2 and set(udiffse["summary"]) == {"+0", "+5", "all"}  # EM iterations x steps; 0 and 5 dB
    assert "UDiffSE is scored at 0 and 5 dB only" in (tmp_path / "results.md").read_text()
