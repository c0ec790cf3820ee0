"""Build the shipped default encoder, lsr/models/inference-free-default/ (package data; fp16, < 10 MB, no download needed):
the splade-tiny MLM as the document encoder, the OpenSearch IDF table as the query side (inference-free).

It is NOT fine-tuned: `lsr train` runs on NFCorpus did not beat this starting point on NFCorpus test (README,
Training), and a regression should not be the default. Rerun after a better `lsr train` result with --from DIR.

python scripts/default_model.py [--from ../shared/models/splade-tiny] [--idf ../shared/models/opensearch-idf/idf.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", default=str(ROOT.parent / "shared" / "models" / "splade-tiny"))
    parser.add_argument("--idf", default=str(ROOT.parent / "shared" / "models" / "opensearch-idf" / "idf.json"))
    parser.add_argument("--out", default=str(ROOT / "lsr" / "models" / "inference-free-default"))
    parser.add_argument("--max-document-length", type=int, default=256)
    args = parser.parse_args()

    from lsr.encoders import load_encoder

    source = Path(args.source)
    lsr_dir = (source / "lsr_encoder.json").exists()
    encoder = load_encoder(source, kind=None if lsr_dir else "inference-free", idf=None if lsr_dir else args.idf,
                           device="cpu", max_document_length=args.max_document_length)
    encoder.idf = np.round(encoder.idf, 4).astype(np.float32)  # 4 decimals: half the JSON, no ranking change
    encoder.config.extra = {**encoder.config.extra, "base_model": str(source.name), "idf_source": Path(args.idf).name,
                            "fine_tuned": False}
    encoder.model.half()
    out = encoder.save(args.out)
    vocab = sorted(encoder.tokenizer.get_vocab().items(), key=lambda item: item[1])
    if [i for _, i in vocab] != list(range(len(vocab))):
        raise SystemExit("the vocabulary ids are not contiguous; keep tokenizer.json")
    (out / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab))  # 230 kB instead of 710 kB
    (out / "tokenizer.json").unlink()
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(str(out))
    probe = ["Statin use and breast cancer survival: a nationwide cohort study", "naïve café ω-3 (n=1,204) COVID-19"]
    if reloaded(probe)["input_ids"] != encoder.tokenizer(probe)["input_ids"]:
        raise SystemExit("the vocab.txt tokenizer does not reproduce the original; keep tokenizer.json")
    table = json.loads((out / "idf.json").read_text())
    (out / "idf.json").write_text(json.dumps({t: round(w, 4) for t, w in table.items()}, separators=(",", ":")))
    shutil.copy(ROOT / "lsr" / "models" / "MODEL_CARD.md", out / "README.md")
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
