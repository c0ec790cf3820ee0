"""Training losses, one per module, each a pure function of scores or representations.

:class:`training.losses.combined.CombinedLoss` puts them together and returns every named term for logging.
"""

from training.losses.combined import CombinedLoss, LossWeights
from training.losses.contrastive import contrastive_loss
from training.losses.flops import flops, flops_weight
from training.losses.idf_flops import contribution_flops, idf_aware_flops
from training.losses.kl import kl_distillation
from training.losses.margin_mse import margin_mse

__all__ = [
    "CombinedLoss",
    "LossWeights",
    "contrastive_loss",
    "contribution_flops",
    "flops",
    "flops_weight",
    "idf_aware_flops",
    "kl_distillation",
    "margin_mse",
]
