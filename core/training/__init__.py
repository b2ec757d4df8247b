"""The training engine: ``train`` (AdamW + warm-up/cosine, EMA, clipping, accumulation, bf16, DDP,
exact resume from atomic safetensors checkpoints) and ``load_model``."""

from .checkpoint import Checkpoint, latest_checkpoint, latest_step, load_checkpoint, load_latest, save_checkpoint, verify
from .data import DataPosition, ShardedBatches
from .ema import EMA
from .engine import NonFiniteLossError, TrainResult, load_model, mix_seed, train, validation_loss
from .optim import build_optimizer, build_scheduler, lr_factor

__all__ = [
    "EMA",
    "Checkpoint",
    "DataPosition",
    "NonFiniteLossError",
    "ShardedBatches",
    "TrainResult",
    "build_optimizer",
    "build_scheduler",
    "latest_checkpoint",
    "latest_step",
    "load_checkpoint",
    "load_latest",
    "load_model",
    "lr_factor",
    "mix_seed",
    "save_checkpoint",
    "train",
    "validation_loss",
    "verify",
]
