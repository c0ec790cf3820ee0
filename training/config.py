"""`lsr train`'s settings (:class:`TrainConfig`): a module of its own, without torch, so the CLI builds its flags from
them without importing what training computes with (``lsr serve`` and ``lsr search`` parse the same command line)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lsr.errors import InvalidInput, require_finite

if TYPE_CHECKING:
    from lsr.training.losses import LossWeights


@dataclass
class TrainConfig:
    """Every field can come from the YAML/JSON config file and be overridden by a flag of the same name."""

    kind: str = "inference-free"  # or "splade"
    base_model: str = ""  # encoder to start from: lsr encoder directory or Hugging Face MLM directory
    idf: str | None = None  # inference-free: query-side {token: weight} table (default: the base model's)
    beir: str = ""  # BEIR folder: corpus.jsonl, queries.jsonl, qrels/
    train_split: str = "train"
    examples: str | None = None  # prepared examples JSONL; default: built from qrels (+ self-supervised pairs)
    self_supervised: int = 0  # number of title -> body pairs to add (0: none, -1: every document with a title)
    negatives: int = 1  # hard negatives per example
    negative_depth: int = 100  # sampled from the miner's top-N, judged documents excluded
    miner: str = "bm25"  # "bm25" or the path of an lsr index
    teachers: list[str] = field(default_factory=list)  # "dense:DIR", "splade:DIR", "bm25"
    teacher_weights: list[float] | None = None  # default: equal
    teacher_scale: float = 30.0
    cache_dir: str = "var/cache/teachers"
    contrastive: float = 1.0
    kl: float = 1.0
    margin_mse: float = 0.0
    temperature: float = 1.0
    contrastive_temperature: float = 1.0
    flops_documents: float = 0.002
    flops_queries: float = 0.0
    flops_warmup_steps: int = 200
    regularizer: str = "idf-flops"  # "idf-flops" or "flops" (on idf * w: the ablation baseline)
    lr: float = 5e-5
    freeze_embeddings: bool = False  # keep the (tied) word embeddings / vocabulary projection fixed
    weight_decay: float = 0.01
    warmup_steps: int = 100
    steps: int = 1000
    batch_size: int = 8  # queries per micro-batch; documents = batch_size * (1 + negatives)
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    max_query_length: int = 64
    max_document_length: int = 128  # training (and dev-slice evaluation) truncation: a CPU budget, not a model choice
    index_document_length: int = 0  # truncation of the saved encoder and the final evaluation (0: the base model's)
    dtype: str = "auto"  # precision of the vocabulary projection that finds the max (bf16 on CUDA / AVX-512 CPUs)
    device: str | None = None
    seed: int = 13
    output: str = ""  # the trained encoder directory
    work_dir: str | None = None  # checkpoints, prepared examples, logs (default: <output>.work)
    eval_every: int = 250  # steps between dev evaluations (0: only at the end)
    eval_start: bool = True  # with eval_every > 0: evaluate the starting model too, so "best" can be "no change"
    eval_split: str = "dev"
    eval_queries: int = 100  # fixed slice of the dev split (0: all)
    eval_documents: int = 1500  # documents of the dev index: the slice's judged documents + a fixed random fill
    checkpoint_every: int = 250
    save_dtype: str = "fp32"  # "fp16" halves the saved model (the shipped default); weights are rounded before the final eval
    final_eval_split: str | None = None  # e.g. "test": full-corpus `lsr eval` of the result, written to the card
    command: str = ""  # the command line that started the run (for the model card)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # a NaN learning rate passes every comparison below: refuse it here
            value = getattr(self, f.name)
            if isinstance(value, float):
                require_finite(value, f.name)
            elif isinstance(value, list) and value and all(isinstance(v, float) for v in value):
                for v in value:
                    require_finite(v, f.name)
        if self.kind not in ("inference-free", "splade"):
            raise InvalidInput(f"kind must be inference-free or splade, got {self.kind!r}")
        for name in ("steps", "batch_size", "grad_accum", "max_query_length", "max_document_length"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.negatives < 0:
            raise InvalidInput(f"negatives must be >= 0, got {self.negatives}")
        if self.index_document_length < 0:
            raise InvalidInput(f"index_document_length must be >= 0 (0: the base model's), got {self.index_document_length}")
        if self.lr <= 0:
            raise InvalidInput(f"lr must be > 0, got {self.lr}")
        if self.save_dtype not in ("fp32", "fp16"):
            raise InvalidInput(f"save_dtype must be fp32 or fp16, got {self.save_dtype!r}")
        if self.teacher_weights is not None and len(self.teacher_weights) != len(self.teachers):
            raise InvalidInput(f"{len(self.teacher_weights)} teacher weights for {len(self.teachers)} teachers")

    @property
    def work(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path(self.output + ".work")

    def loss_weights(self) -> LossWeights:
        from lsr.training.losses import LossWeights

        names = {f.name for f in dataclasses.fields(LossWeights)}
        return LossWeights(**{name: getattr(self, name) for name in names})

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        from lsr.config_files import read_mapping

        data = read_mapping(path, (f.name for f in dataclasses.fields(cls)), "training config")
        return cls(**data)
