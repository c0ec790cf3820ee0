"""``lsr eval --report DIR``: one Markdown and HTML report over several systems (modes of an index, baselines,
earlier ``lsr eval --output`` files), with three matplotlib plots:

- ``ndcg_vs_latency.png``: nDCG@10 against mean single-query latency, one point a system;
- ``recall_curves.png``: mean recall@k for k from 10 to 1000;
- ``delta_histogram.png``: per-query nDCG@10 minus the baseline's (BM25 by default), one histogram a system.

A system is its metrics (as ``lsr eval --output`` writes them) and its TREC run file; per-query figures come from the
run file, so a system evaluated elsewhere compares the same way.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsr.errors import InvalidInput, MissingDependency
from lsr.evaluation import RECALL_CUTOFFS, per_query_metrics, read_trec_run

REQUIRED = ("ndcg@10", "recall@100", "split")
PLOTS = ("ndcg_vs_latency.png", "recall_curves.png", "delta_histogram.png")


@dataclass
class System:
    name: str
    metrics: dict
    run: Path

    @classmethod
    def from_metrics_file(cls, path: str | Path) -> System:
        path = Path(path)
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{path}: not a metrics file of `lsr eval --output` ({exc})") from None
        missing = [key for key in REQUIRED if key not in metrics] if isinstance(metrics, dict) else list(REQUIRED)
        if missing:
            raise InvalidInput(f"{path}: not a metrics file of `lsr eval --output` (no {', '.join(missing)})")
        run = metrics.get("run")
        if not run or not Path(run).exists():
            raise InvalidInput(f"{path}: its run file {run!r} is missing; evaluate with --output (the run is written "
                               "next to it) or --run FILE")
        return cls(metrics.get("name") or path.stem, metrics, Path(run))


def _table(systems: list[System], per_query: dict[str, dict], baseline: str) -> tuple[list[str], list[list[str]]]:
    from lsr.significance import compare_runs

    header = ["system", "nDCG@10", "Δ vs " + baseline, "95 % CI", "p (randomization)", "wins / losses", "R@100",
              "MRR@10", "mean ms", "p99 ms", "QPS"]
    base = per_query[baseline]
    rows = []
    for system in systems:
        m = system.metrics
        test = compare_runs(per_query[system.name], base) if system.name != baseline else None
        rows.append([
            system.name, f"{m['ndcg@10']:.4f}",
            "—" if test is None else f"{test['mean_difference']:+.4f}" + (" *" if test["significant"] else ""),
            "—" if test is None else f"[{test['ci'][0]:+.4f}, {test['ci'][1]:+.4f}]",
            "—" if test is None else f"{test['p_value']:.3g}",
            "—" if test is None else f"{test['wins']} / {test['losses']}",
            f"{m['recall@100']:.4f}", f"{m.get('mrr@10', float('nan')):.4f}",
            _ms(m.get("latency_ms_mean")), _ms(m.get("latency_ms_p99")),
            f"{m['qps']:.0f}" if m.get("qps") else "—",
        ])
    return header, rows


def _ms(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def _plots(systems: list[System], per_query: dict[str, dict], baseline: str, out: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency("the report's plots need matplotlib: pip install 'lsr[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {s.name: plt.cm.tab10(i % 10) for i, s in enumerate(systems)}

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for s in systems:
        latency = s.metrics.get("latency_ms_mean")
        if latency is None:
            continue
        ax.scatter(latency, s.metrics["ndcg@10"], s=60, color=colors[s.name], zorder=3)
        ax.annotate(s.name, (latency, s.metrics["ndcg@10"]), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("mean latency per query, ms (log scale; one query at a time)")
    ax.set_ylabel("nDCG@10")
    ax.set_title("Effectiveness against latency")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / PLOTS[0], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for s in systems:
        queries = per_query[s.name].values()
        curve = [np.mean([q[f"recall@{c}"] for q in queries]) for c in RECALL_CUTOFFS]
        ax.plot(RECALL_CUTOFFS, curve, marker="o", label=s.name, color=colors[s.name])
    ax.set_xscale("log")
    ax.set_xticks(RECALL_CUTOFFS, [str(c) for c in RECALL_CUTOFFS])
    ax.set_xlabel("k (hits)")
    ax.set_ylabel("mean recall@k")
    ax.set_title("Recall at depth")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOTS[1], dpi=120)
    plt.close(fig)

    others = [s for s in systems if s.name != baseline]
    fig, axes = plt.subplots(len(others) or 1, 1, figsize=(6.4, 1.9 * max(1, len(others)) + 0.8), sharex=True,
                             squeeze=False)
    base = per_query[baseline]
    bins = np.linspace(-1.025, 1.025, 42)  # a bin centred on 0
    for ax, s in zip(axes[:, 0], others):
        deltas = np.array([per_query[s.name][q]["ndcg@10"] - base[q]["ndcg@10"] for q in base])
        ax.hist(deltas[deltas != 0], bins=bins, color=colors[s.name], alpha=0.85)  # equal queries: in the title
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_ylabel("queries")
        ax.set_title(f"{s.name}: {int((deltas > 0).sum())} better, {int((deltas < 0).sum())} worse, "
                     f"{int((deltas == 0).sum())} equal (not drawn)", fontsize=9)
    axes[-1, 0].set_xlabel(f"per-query nDCG@10 minus {baseline}'s")
    fig.suptitle(f"Per-query differences against {baseline}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out / PLOTS[2], dpi=120)
    plt.close(fig)


def write_report(systems: list[System], qrels: dict[str, dict[str, int]], out: str | Path, baseline: str,
                 title: str) -> dict:
    """Write ``report.md``, ``report.html`` and the three PNGs into ``out``; returns their paths."""
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise InvalidInput(f"two systems share a name in {names}; name them apart")
    if baseline not in names:
        raise InvalidInput(f"the baseline {baseline!r} is not among the systems {names}")
    splits = {s.name: s.metrics.get("split") for s in systems}
    if len(set(splits.values())) > 1:
        raise InvalidInput(f"the systems were evaluated on different splits ({splits}); compare runs of one split")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_query = {s.name: per_query_metrics(read_trec_run(s.run), qrels) for s in systems}
    _plots(systems, per_query, baseline, out)
    header, rows = _table(systems, per_query, baseline)
    first = systems[0].metrics
    context = (f"{len(qrels)} judged queries of split {first.get('split', '?')}, k = {first.get('k', '?')}; latency "
               "is one query at a time, end to end (encoding included), on this machine.")
    md = [f"# {title}", "", context, "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    md += ["", f"Δ is the mean per-query nDCG@10 difference against {baseline}, with its bootstrap 95 % confidence "
           "interval over queries and the p-value of a paired randomization test (10,000 sign flips); * marks p < "
           "0.05, a difference the test does not put down to noise. Wins / losses count the queries where it is "
           "above / below.", ""]
    captions = ["nDCG@10 against mean latency", "Recall at depth", f"Per-query nDCG@10 against {baseline}"]
    for plot, caption in zip(PLOTS, captions):
        md += [f"![{caption}]({plot})", ""]
    md += ["Systems:", ""] + [f"- **{s.name}**: {_describe(s)}" for s in systems]
    (out / "report.md").write_text("\n".join(md) + "\n")

    cells = lambda row, tag: "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row)  # noqa: E731
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(context)}</p>", "<table>",
            f"<tr>{cells(header, 'th')}</tr>", *[f"<tr>{cells(row, 'td')}</tr>" for row in rows], "</table>"]
    body += [f'<figure><img src="{p}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}</figcaption></figure>'
             for p, c in zip(PLOTS, captions)]
    body += ["<ul>", *[f"<li><b>{html.escape(s.name)}</b>: {html.escape(_describe(s))}</li>" for s in systems], "</ul>"]
    style = ("body{font-family:sans-serif;max-width:60rem;margin:2rem auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}td:first-child{text-align:left}")
    (out / "report.html").write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                                     f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    return {"report": str(out / "report.md"), "html": str(out / "report.html"),
            "plots": [str(out / p) for p in PLOTS], "baseline": baseline, "systems": names}


def _describe(system: System) -> str:
    m = system.metrics
    parts = [f"mode {m['mode']}" if m.get("mode") else None,
             ", ".join(f"{c}: {n}" for c, n in (m.get("components") or {}).items()) or m.get("system"),
             f"backend {m['backend']}" if m.get("backend") else None,
             f"index {m['index']}" if m.get("index") else None, f"run {system.run}"]
    return "; ".join(p for p in parts if p)
