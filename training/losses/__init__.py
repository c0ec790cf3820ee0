"""Training losses, one per module, each a pure function of scores or representations.

:class:`training.losses.combined.CombinedLoss` puts them together and returns every named term for logging.
"""

from lsr.training.losses.combined import CombinedLoss, LossWeights
from lsr.training.losses.contrastive import contrastive_loss
from lsr.training.losses.flops import flops, flops_weight
from lsr.training.losses.idf_flops import contribution_flops, idf_aware_flops
from lsr.training.losses.kl import kl_distillation
from lsr.training.losses.margin_mse import margin_mse

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
