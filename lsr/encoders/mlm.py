"""SPLADE pooling over a masked-language-model head, with bounded memory.

SPLADE (Formal et al., SIGIR 2021; SPLADE v2, arXiv 2109.10086): w_t = max_i log(1 + ReLU(logit_{i,t})) over the
non-padding positions i. The activation is monotone, so we max-pool the raw logits and activate the (batch,
vocabulary) result once. The (vocabulary x tokens) logits are computed over packed non-padding tokens in chunks of at
most ``chunk_tokens`` tokens (so memory stays bounded whatever the batch and length, and no work is spent on
padding), and the decoder bias is added after the max.

Also computed, for models published that way: sum pooling (SPLADE v1: w_t = sum_i act(logit_{i,t}), activated per
position), and the activation log(1 + log(1 + ReLU(x))) of OpenSearch's v3 models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from lsr.encoders.device import autocast_for
from lsr.errors import EncoderError


def split_mlm_head(model: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Linear]:
    """Split a ``*ForMaskedLM`` head into its per-token transform and its vocabulary projection."""
    if hasattr(model, "cls") and hasattr(model.cls, "predictions"):  # BERT family
        return model.cls.predictions.transform, model.cls.predictions.decoder
    if hasattr(model, "lm_head") and hasattr(model.lm_head, "decoder"):  # RoBERTa family
        head = model.lm_head

        def roberta_transform(hidden: torch.Tensor) -> torch.Tensor:
            return head.layer_norm(nn.functional.gelu(head.dense(hidden)))

        return roberta_transform, head.decoder
    if hasattr(model, "vocab_projector"):  # DistilBERT

        def distilbert_transform(hidden: torch.Tensor) -> torch.Tensor:
            return model.vocab_layer_norm(model.activation(model.vocab_transform(hidden)))

        return distilbert_transform, model.vocab_projector
    raise EncoderError(
        f"{type(model).__name__} has no masked-language-model head lsr knows (BERT, RoBERTa, DistilBERT); "
        "a sparse encoder needs an MLM head"
    )


def activate(logits: torch.Tensor, activation: str = "log1p_relu") -> torch.Tensor:
    """A sparse activation (:data:`lsr.encoders.config.ACTIVATIONS`); both are monotone and 0 exactly where x <= 0."""
    weights = torch.log1p(torch.relu(logits))
    if activation == "log1p_log1p_relu":
        weights = torch.log1p(weights)
    elif activation != "log1p_relu":
        raise EncoderError(f"unknown activation {activation!r}")
    return weights


class MlmPooler(nn.Module):
    """(input_ids, attention_mask) -> (batch, vocabulary) SPLADE weights; the ``special_ids`` dimensions zeroed."""

    def __init__(self, model: nn.Module, special_ids: Sequence[int], chunk_tokens: int = 2048, pooling: str = "max",
                 activation: str = "log1p_relu") -> None:
        super().__init__()
        if pooling not in ("max", "sum"):
            raise EncoderError(f"unknown sparse pooling {pooling!r}; expected max or sum")
        self.model = model
        self.transform, self.decoder = split_mlm_head(model)
        self.chunk_tokens = chunk_tokens
        self.pooling = pooling
        self.activation = activation
        self.register_buffer("special_ids", torch.as_tensor(sorted(set(special_ids)), dtype=torch.long), persistent=False)

    def max_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Masked max over positions of the raw MLM logits, computed chunk by chunk over packed tokens (max
        pooling); with sum pooling, the masked sum of the activated logits."""
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        lengths = attention_mask.sum(dim=1).tolist()
        packed = hidden[attention_mask.bool()]  # (tokens, hidden), documents contiguous in order
        pooled: list[torch.Tensor] = []
        doc, start = 0, 0
        while doc < len(lengths):
            first_doc, end = doc, start
            while doc < len(lengths) and (end == start or end + lengths[doc] - start <= self.chunk_tokens):
                end += lengths[doc]
                doc += 1
            # (vocabulary, tokens): the transposed product is the faster layout on CPU, and the max runs along
            # contiguous memory. The bias is added after the max: max_i(x_i + b) == max_i(x_i) + b, exactly.
            logits_t = self.decoder.weight @ self.transform(packed[start:end]).T
            if self.pooling == "sum":  # activated per position, so the bias goes in first
                if self.decoder.bias is not None:
                    logits_t = logits_t + self.decoder.bias[:, None]
                logits_t = activate(logits_t.float(), self.activation)
            offset = 0
            for length in lengths[first_doc:doc]:
                window = logits_t[:, offset : offset + length]
                pooled.append(window.sum(dim=1) if self.pooling == "sum" else window.amax(dim=1))
                offset += length
            start = end
        maxed = torch.stack(pooled)
        if self.pooling == "max" and self.decoder.bias is not None:
            maxed = maxed + self.decoder.bias
        return maxed

    def forward_train(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, dtype: str = "auto") -> torch.Tensor:
        """Same weights as :meth:`forward`, with gradients, at a fraction of the cost of autograd through the head.

        The gradient of w_t = log(1 + ReLU(max_i z_{i,t})) flows only through the arg-max position i*(t), and only
        where w_t > 0. So the (vocabulary x tokens) product runs without autograd (optionally under bf16 autocast)
        to find i*(t) and the active (document, token) pairs, and only those logits z_{i*,t} = E_t . h_{i*} + b_t
        are recomputed with autograd: a few hundred dot products per document instead of a full vocabulary
        projection per token kept for backward. Values and gradients equal the dense path's (ties aside).
        Max pooling only: a sum-pooled model is refused here (its gradient reaches every position).
        """
        if self.pooling != "max":
            raise EncoderError("training computes max pooling only; this encoder sum-pools (SPLADE v1): train a "
                               "max-pooled model, or fine-tune it with sentence-transformers")
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        lengths = attention_mask.sum(dim=1).tolist()
        transformed = self.transform(hidden[attention_mask.bool()])  # (tokens, hidden), with autograd
        batch, vocab = len(lengths), self.decoder.weight.shape[0]
        best = torch.empty(batch, vocab, device=input_ids.device)
        where = torch.empty(batch, vocab, dtype=torch.long, device=input_ids.device)
        with torch.no_grad(), autocast_for(input_ids.device, dtype):
            packed = transformed.detach()
            doc, start = 0, 0
            while doc < batch:
                first_doc, end = doc, start
                while doc < batch and (end == start or end + lengths[doc] - start <= self.chunk_tokens):
                    end += lengths[doc]
                    doc += 1
                logits_t = self.decoder.weight @ packed[start:end].T
                offset = start
                for row in range(first_doc, doc):
                    values, indices = logits_t[:, offset - start : offset - start + lengths[row]].max(dim=1)
                    best[row] = values.float()
                    where[row] = indices + offset
                    offset += lengths[row]
                start = end
            if self.decoder.bias is not None:
                best += self.decoder.bias.float()
            if len(self.special_ids):
                best[:, self.special_ids.to(best.device)] = float("-inf")
        rows, terms = torch.nonzero(best > 0, as_tuple=True)
        logits = (self.decoder.weight[terms] * transformed[where[rows, terms]]).sum(dim=-1)
        if self.decoder.bias is not None:
            logits = logits + self.decoder.bias[terms]
        weights = torch.zeros(batch, vocab, device=input_ids.device, dtype=logits.dtype)
        return weights.index_put((rows, terms), activate(logits, self.activation))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, dtype: str = "auto") -> torch.Tensor:
        with autocast_for(input_ids.device, dtype):
            pooled = self.max_logits(input_ids, attention_mask)
        weights = pooled.float() if self.pooling == "sum" else activate(pooled.float(), self.activation)
        if len(self.special_ids):
            weights[:, self.special_ids.to(weights.device)] = 0.0
        return weights
