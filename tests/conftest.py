"""Test-wide settings: float64 oracles are explicit per test; keep CPU threads low (2-core CI)."""

import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
