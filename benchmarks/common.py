"""What the benchmark scripts share: where NFCorpus is, latency percentiles, and printing + saving a result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
NFCORPUS = SHARED / "data" / "beir" / "nfcorpus"


def percentiles(latencies_ms: list[float]) -> dict:
    values = np.asarray(latencies_ms)
    return {"mean_ms": float(values.mean()), "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99))}


def emit(result: dict, output: str | None) -> None:
    """Print ``result`` as JSON and, with ``output``, write it there too."""
    text = json.dumps(result, indent=2)
    print(text)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text + "\n")
