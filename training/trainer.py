"""Training sparse encoders: inference-free (documents through the MLM, queries = tokenizer + IDF) and SPLADE.

One step: a batch of examples (query, positive, hard negatives) -> document weights through the MLM max pooler
(:meth:`MlmPooler.forward_train`, exact gradients at a fraction of autograd's cost) -> scores of every query
against every document of the batch -> :class:`CombinedLoss` (contrastive over positive + hard + in-batch
negatives, KL to the ensemble teacher over the query's own candidates, FLOPS or IDF-aware FLOPS) -> AdamW.

Everything that decides a step is a function of (config, step): the examples of step s come from a permutation
seeded by (seed, epoch), dropout uses a generator reseeded per step, so ``--resume`` continues exactly where the
checkpoint left off.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from lsr.encoders import InferenceFreeEncoder, SparseEncoder, load_encoder
from lsr.encoders.batching import pad_batch
from lsr.encoders.device import resolve_device
from lsr.errors import InvalidInput, MissingFile
from lsr.training.config import TrainConfig
from lsr.training.data import (
    BODY_SUFFIX,
    Example,
    TrainingTexts,
    examples_from_qrels,
    mine_negatives,
    read_examples,
    read_titles,
    relevant_sets,
    self_supervised_examples,
    write_examples,
)
from lsr.training.losses import CombinedLoss

CHECKPOINT_FILE = "state.pt"

__all__ = ["CHECKPOINT_FILE", "TrainConfig", "Trainer", "main_train"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, config: TrainConfig, log=print) -> None:
        if not config.output:
            raise InvalidInput("no output directory: pass --output DIR")
        if not config.base_model:
            raise InvalidInput("no base model: pass --base-model DIR (an MLM encoder to start from)")
        if not config.beir:
            raise InvalidInput("no training data: pass --beir DIR (a BEIR folder with qrels/ and queries.jsonl)")
        self.config = config
        self.log = log
        self.device = resolve_device(config.device)
        seed_everything(config.seed)
        config.work.mkdir(parents=True, exist_ok=True)
        self.encoder = self._load_encoder()
        self.model = self.encoder.model
        self.pooler = self.encoder.pooler
        self.documents = TrainingTexts.from_corpus(config.beir)
        self.examples = self._prepare_examples()
        self.relevant = relevant_sets(config.beir, config.train_split)
        self.teacher = self._teacher_scores()
        idf = None
        if isinstance(self.encoder, InferenceFreeEncoder):
            idf = torch.as_tensor(self.encoder._query_idf, dtype=torch.float32, device=self.device)
        self.query_idf = idf
        self.loss = CombinedLoss(config.loss_weights(), idf)
        if config.freeze_embeddings:
            # Adam moves every row of the 30k x hidden (tied) vocabulary matrix by about lr per step as soon as any
            # gradient reaches it, so even a tiny FLOPS weight sparsifies fast; freezing it leaves the body, the
            # MLM transform and the vocabulary bias to learn.
            self.model.get_input_embeddings().weight.requires_grad_(False)
            self.encoder.pooler.decoder.weight.requires_grad_(False)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = 0
        self.best: dict | None = None
        self.history: list[dict] = []
        self._token_cache: dict[str, list[int]] = {}

    # -- setup ------------------------------------------------------------------------------------------------------
    def _load_encoder(self) -> SparseEncoder:
        c = self.config
        directory = Path(c.base_model)
        kind = None if (directory / "lsr_encoder.json").exists() else c.kind
        encoder = load_encoder(c.base_model, kind=kind, idf=c.idf, device=str(self.device), dtype=c.dtype,
                               max_query_length=c.max_query_length,
                               max_document_length=c.index_document_length or None)
        if encoder.config.kind != c.kind:
            raise InvalidInput(f"{c.base_model} is a {encoder.config.kind!r} encoder but kind is {c.kind!r}")
        return encoder

    def _prepare_examples(self) -> list[Example]:
        c = self.config
        if c.examples:
            examples = read_examples(c.examples, self.documents)
            self.log(f"read {len(examples)} prepared examples from {c.examples}")
            return examples
        prepared = c.work / "examples.jsonl"
        if prepared.exists():
            examples = read_examples(prepared, self.documents)
            self.log(f"read {len(examples)} prepared examples from {prepared}")
            return examples
        examples = examples_from_qrels(c.beir, c.train_split, self.documents)
        if c.self_supervised:
            titles = read_titles(c.beir)
            limit = None if c.self_supervised < 0 else c.self_supervised
            examples += self_supervised_examples(self.documents, titles, limit=limit, seed=c.seed)
        if c.negatives > 0:
            examples = mine_negatives(examples, self._miner(), c.negatives, c.negative_depth,
                                      relevant_sets(c.beir, c.train_split), seed=c.seed)
        write_examples(examples, prepared)
        self.log(f"prepared {len(examples)} examples -> {prepared}")
        return examples

    def _miner(self):
        c = self.config
        if c.miner == "bm25":
            from lsr.index.bm25 import Bm25

            ids = self.documents.ids()
            bm25 = Bm25(ids, [self.documents.full[i] for i in ids])
            return lambda query, depth: bm25.search(query, depth)[0]
        from lsr.engine import Engine

        engine = Engine.open(c.miner, parts=())
        return lambda query, depth: engine.search(query, depth, mode="sparse").ids

    def _teacher_scores(self) -> torch.Tensor | None:
        from lsr.training.teachers import aggregate, build_teacher, teacher_scores

        c = self.config
        if not c.teachers:
            return None
        raw = []
        for spec in c.teachers:
            teacher = build_teacher(spec)
            raw.append(teacher_scores(teacher, self.examples, self.documents, c.cache_dir))
            del teacher
        return torch.as_tensor(aggregate(raw, c.teacher_weights, c.teacher_scale))

    def _lr_factor(self, step: int) -> float:
        warmup = self.config.warmup_steps
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (self.config.steps - step) / max(1, self.config.steps - warmup))

    # -- batches ------------------------------------------------------------------------------------------------------
    def batch_indices(self, micro_step: int) -> np.ndarray:
        """Example indices of a micro-batch: a deterministic function of (seed, micro_step)."""
        n, size = len(self.examples), self.config.batch_size
        per_epoch = max(1, n // size)
        epoch, within = divmod(micro_step, per_epoch)
        order = np.random.default_rng([self.config.seed, epoch]).permutation(n)
        return order[within * size : (within + 1) * size]

    def _tokens(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        missing = [t for t in dict.fromkeys(texts) if (t, max_length) not in self._token_cache]
        if missing:
            for text, ids in zip(missing, self.encoder.tokenize(missing, max_length)):
                self._token_cache[(text, max_length)] = ids
        return [self._token_cache[(t, max_length)] for t in texts]

    def _query_weights(self, queries: Sequence[str]) -> torch.Tensor:
        c = self.config
        tokens = self._tokens(queries, c.max_query_length)
        if self.query_idf is not None:  # inference-free: distinct tokens x IDF, no model
            weights = torch.zeros(len(queries), self.encoder.vocab_size, device=self.device)
            for row, ids in enumerate(tokens):
                ids = torch.as_tensor(sorted(set(ids)), dtype=torch.long, device=self.device)
                weights[row, ids] = self.query_idf[ids]
            return weights
        input_ids, mask = pad_batch(tokens, self.encoder.tokenizer.pad_token_id, self.device)
        return self.pooler.forward_train(input_ids, mask, c.dtype)

    def _in_batch_mask(self, batch: list[Example], doc_ids: list[str]) -> torch.Tensor:
        """False where a document of another query is judged relevant for this query (not a true negative)."""
        mask = torch.ones(len(batch), len(doc_ids), dtype=torch.bool)
        for row, example in enumerate(batch):
            relevant = self.relevant.get(example.query_id, set()) | {example.positive}
            for col, doc in enumerate(doc_ids):
                base = doc[: -len(BODY_SUFFIX)] if doc.endswith(BODY_SUFFIX) else doc
                if doc in relevant or base in relevant or (example.query_id == f"title:{base}"):
                    mask[row, col] = False
        return mask.to(self.device)

    def micro_step(self, micro_step: int) -> dict[str, float]:
        c = self.config
        rows = self.batch_indices(micro_step)
        batch = [self.examples[i] for i in rows]
        width = len(batch[0].candidates())
        doc_ids = [doc for example in batch for doc in example.candidates()]
        doc_tokens = self._tokens([self.documents[d] for d in doc_ids], c.max_document_length)
        input_ids, mask = pad_batch(doc_tokens, self.encoder.tokenizer.pad_token_id, self.device)
        doc_weights = self.pooler.forward_train(input_ids, mask, c.dtype)
        query_weights = self._query_weights([e.query for e in batch])
        scores = query_weights @ doc_weights.T
        candidates = (torch.arange(len(batch))[:, None] * width + torch.arange(width)[None, :]).to(self.device)
        teacher = self.teacher[torch.as_tensor(rows)].to(self.device) if self.teacher is not None else None
        terms = self.loss(scores, candidates, doc_weights, self.step, teacher, self._in_batch_mask(batch, doc_ids),
                          query_weights if self.query_idf is None else None)
        (terms["loss"] / c.grad_accum).backward()
        out = {name: float(value.detach()) for name, value in terms.items()}
        out["doc_nnz"] = float((doc_weights.detach() > 0).sum(dim=1).float().mean())
        return out

    def train_step(self) -> dict[str, float]:
        c = self.config
        self.model.train()
        torch.manual_seed(c.seed * 1_000_003 + self.step)  # dropout masks depend on the step only
        self.optimizer.zero_grad(set_to_none=True)
        parts = [self.micro_step(self.step * c.grad_accum + a) for a in range(c.grad_accum)]
        if c.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        merged = {key: float(np.mean([p[key] for p in parts])) for key in parts[0]}
        merged["lr"] = self.scheduler.get_last_lr()[0]
        return merged

    # -- checkpoints ----------------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        directory = self.config.work / "checkpoints" / f"step-{self.step:07d}"
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save({"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "best": self.best, "history": self.history,
                    "config": asdict(self.config)}, tmp / CHECKPOINT_FILE)
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)
        for old in sorted((self.config.work / "checkpoints").glob("step-???????"))[:-2]:  # keep the last two
            shutil.rmtree(old, ignore_errors=True)
        return directory

    def load_checkpoint(self, path: str | Path | None = None) -> int:
        """Resume from ``path`` (a step-N directory) or from the latest checkpoint of the work directory."""
        if path is None:
            found = sorted((self.config.work / "checkpoints").glob("step-???????"))
            if not found:
                raise MissingFile(f"--resume: no checkpoint under {self.config.work / 'checkpoints'}")
            path = found[-1]
        state = torch.load(Path(path) / CHECKPOINT_FILE, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.best, self.history = state["step"], state["best"], state["history"]
        return self.step

    # -- evaluation -------------------------------------------------------------------------------------------------------
    def _dev_slice(self) -> tuple[list[str], Path]:
        """A fixed dev slice: ``eval_queries`` judged queries and an index corpus of their judged documents plus a
        seeded random fill up to ``eval_documents`` (written once as JSONL)."""
        from lsr.corpus import read_qrels

        c = self.config
        qrels = read_qrels(c.beir, c.eval_split)
        qids = sorted(qrels)
        rng = np.random.default_rng(c.seed)
        if c.eval_queries and c.eval_queries < len(qids):
            qids = sorted(rng.choice(qids, size=c.eval_queries, replace=False).tolist())
        path = c.work / f"eval-{c.eval_split}-corpus.jsonl"
        if not path.exists():
            all_ids = self.documents.ids()
            chosen = {d for q in qids for d in qrels[q] if d in self.documents.full}
            rest = [d for d in all_ids if d not in chosen]
            fill = max(0, c.eval_documents - len(chosen)) if c.eval_documents else len(rest)
            chosen |= set(rng.choice(rest, size=min(fill, len(rest)), replace=False).tolist()) if rest else set()
            with path.open("w", encoding="utf-8") as out:
                for d in all_ids:
                    if d in chosen:
                        out.write(json.dumps({"_id": d, "title": "", "text": self.documents.full[d]}) + "\n")
        return qids, path

    def evaluate(self, split: str | None = None, full_corpus: bool = False) -> dict:
        """nDCG@10 etc. through the same path as `lsr index` + `lsr eval`: build an index, search, pytrec_eval."""
        from lsr.engine import Engine
        from lsr.evaluation import evaluate
        from lsr.index import Index

        c = self.config
        self.model.eval()
        if full_corpus:
            qids, corpus, where = None, c.beir, c.work / f"index-{split}"
        else:
            qids, corpus = self._dev_slice()
            where = c.work / "index-dev"
        index_length = self.encoder.config.max_document_length
        if not full_corpus:  # the dev slice is read as the model is trained (faster on CPU, a fair comparison)
            self.encoder.config.max_document_length = c.max_document_length
        try:
            index = Index.build(self.encoder, corpus=corpus, path=where, batch_size=32)
            metrics = evaluate(Engine(index), c.beir, split or c.eval_split, k=1000, progress=False, qids=qids,
                               batch_throughput=False, mode="sparse")
        finally:
            self.encoder.config.max_document_length = index_length
        return {key: metrics[key] for key in ("ndcg@10", "recall@100", "mrr@10", "avg_doc_nnz", "queries",
                                              "doc_count", "postings_per_query")}

    # -- the loop -------------------------------------------------------------------------------------------------------
    def fit(self, resume: str | bool | None = None) -> Path:
        from tqdm.auto import tqdm

        c = self.config
        if resume:
            self.load_checkpoint(None if resume is True else resume)
            self.log(f"resumed at step {self.step}")
        log_path = c.work / "train_log.jsonl"
        started = time.perf_counter()
        bar = tqdm(total=c.steps, initial=self.step, desc="training", unit="step", dynamic_ncols=True)
        with log_path.open("a", encoding="utf-8") as log_file:
            if self.step == 0 and c.eval_every and c.eval_start:
                self._evaluate_and_keep(bar, log_file, {"step": 0})
            while self.step < c.steps:
                terms = self.train_step()
                if not all(math.isfinite(v) for v in terms.values()):
                    raise FloatingPointError(f"step {self.step}: a loss term is not finite {terms}; lower --lr")
                record = {"step": self.step, **terms}
                bar.set_postfix({k: f"{terms[k]:.3g}" for k in ("loss", "contrastive", "kl", "flops_d", "doc_nnz")
                                 if k in terms}, refresh=False)
                bar.update(1)
                at_end = self.step == c.steps
                if (c.eval_every and self.step % c.eval_every == 0) or at_end:
                    self._evaluate_and_keep(bar, None, record)
                if c.checkpoint_every and (self.step % c.checkpoint_every == 0 or at_end):
                    self.save_checkpoint()
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
        bar.close()
        elapsed = time.perf_counter() - started
        return self.finish(elapsed)

    def _evaluate_and_keep(self, bar, log_file, record: dict) -> None:
        """Dev evaluation at the current step; the encoder is kept as ``best`` when it is the best so far (a strict
        improvement, so a run that never beats its starting point ends with the starting point, and says so)."""
        metrics = self.evaluate()
        record["eval"] = metrics
        self.history.append({"step": self.step, **metrics})
        bar.write(f"step {self.step}: dev nDCG@10 {metrics['ndcg@10']:.4f}, "
                  f"recall@100 {metrics['recall@100']:.4f}, doc nnz {metrics['avg_doc_nnz']:.0f}")
        if self.best is None or metrics["ndcg@10"] > self.best["ndcg@10"]:
            self.best = {"step": self.step, **metrics}
            self.encoder.save(self.config.work / "best")
        if log_file is not None:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

    def finish(self, elapsed: float) -> Path:
        """Write the best checkpoint (by dev nDCG@10) as the output encoder directory, with a model card."""
        c = self.config
        best_dir = c.work / "best"
        if best_dir.exists():
            best_model = load_encoder(best_dir, device=str(self.device))
            self.model.load_state_dict(best_model.model.state_dict())
        self.encoder.config.extra = {**self.encoder.config.extra, "base_model": c.base_model,
                                     "training": {"best_step": (self.best or {}).get("step"), "steps": c.steps}}
        if c.save_dtype == "fp16":  # round first, so the figures below are those of the saved weights
            with torch.no_grad():
                for tensor in self.model.state_dict().values():
                    if tensor.is_floating_point():
                        tensor.copy_(tensor.half().float())
        final = None
        if c.final_eval_split:
            final = self.evaluate(c.final_eval_split, full_corpus=True)
            self.log(f"{c.final_eval_split} (full corpus): nDCG@10 {final['ndcg@10']:.4f}, "
                     f"recall@100 {final['recall@100']:.4f}, doc nnz {final['avg_doc_nnz']:.1f}")
        out = Path(c.output)
        if c.save_dtype == "fp16":
            self.model.half()
        self.encoder.save(out)
        self.model.float()
        (out / "training.json").write_text(json.dumps({"config": asdict(c), "best": self.best, "final": final,
                                                       "history": self.history, "train_seconds": elapsed}, indent=2))
        card = model_card(c, self.best, final, self.history, elapsed, len(self.examples),
                          self.encoder.config.max_document_length)
        (out / "README.md").write_text(card)
        return out


def model_card(c: TrainConfig, best: dict | None, final: dict | None, history: list[dict], elapsed: float,
               examples: int, index_length: int) -> str:
    lines = [
        f"# lsr {c.kind} encoder", "",
        f"Trained by `lsr train` from `{c.base_model}` on `{c.beir}` ({c.train_split} qrels"
        + (f", plus {c.self_supervised if c.self_supervised > 0 else 'all'} self-supervised title -> body pairs"
           if c.self_supervised else "") + ").", "",
        "## Reproduce", "", "```", c.command or "lsr train --config <config>", "```", "",
        "## Recipe", "",
        f"- {examples} examples, {c.negatives} BM25 hard negative(s) each (top {c.negative_depth}), in-batch negatives",
        f"- teachers: {', '.join(c.teachers) or 'none'} (weights {c.teacher_weights or 'equal'}, per-query min-max, "
        f"scale {c.teacher_scale})",
        f"- loss: {c.contrastive} x contrastive + {c.kl} x KL (T={c.temperature})"
        + (f" + {c.margin_mse} x MarginMSE" if c.margin_mse else "")
        + f" + {c.flops_documents} x {c.regularizer} on documents (quadratic warm-up over {c.flops_warmup_steps} steps)",
        f"- AdamW lr {c.lr}, weight decay {c.weight_decay}, {c.warmup_steps} warm-up steps, linear decay, {c.steps} "
        f"steps of {c.batch_size} x {c.grad_accum} queries, documents <= {c.max_document_length} tokens in training and "
        f"dev evaluation, <= {index_length} in the saved encoder and the final evaluation, seed {c.seed}",
        f"- wall time {elapsed / 60:.1f} min on {resolve_device(c.device)}", "",
        "## Figures", "",
    ]
    if best:
        lines.append(f"- best dev slice ({best['queries']} {c.eval_split} queries over {best['doc_count']} documents) "
                     f"at step {best['step']}: nDCG@10 {best['ndcg@10']:.4f}, recall@100 {best['recall@100']:.4f}, "
                     f"{best['avg_doc_nnz']:.0f} non-zeros per document")
        if best["step"] == 0:
            lines.append("- **no dev evaluation after step 0 beat the starting model, so this directory holds the "
                         "starting weights** (the training did not help on this data)")
    if final:
        lines.append(f"- {c.final_eval_split}, full corpus ({final['queries']} queries, {final['doc_count']} documents): "
                     f"nDCG@10 {final['ndcg@10']:.4f}, recall@100 {final['recall@100']:.4f}, "
                     f"MRR@10 {final['mrr@10']:.4f}, {final['avg_doc_nnz']:.1f} non-zeros per document")
    if history:
        lines += ["", "| step | dev nDCG@10 | dev recall@100 | doc non-zeros |", "| --- | --- | --- | --- |"]
        lines += [f"| {h['step']} | {h['ndcg@10']:.4f} | {h['recall@100']:.4f} | {h['avg_doc_nnz']:.0f} |"
                  for h in history]
    return "\n".join(lines) + "\n"


def main_train(config: TrainConfig, resume: str | bool | None = None) -> Path:
    trainer = Trainer(config, log=lambda msg: print(msg, file=sys.stderr))
    return trainer.fit(resume=resume)
