from __future__ import annotations

import json
import math

import pytest

from service.cli import main
from tests.conftest import TINY_DOCS, write_jsonl
from training.idf import document_frequencies, idf_from_frequencies


def test_idf_formula_on_a_tiny_corpus(tiny_mlm_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_mlm_dir)
    df, n = document_frequencies(["fish oil", "fish fish", "tea"], tokenizer)
    fish = tokenizer.convert_tokens_to_ids("fish")
    assert n == 3 and df[fish] == 2  # counted once a document
    idf = idf_from_frequencies(df, n)
    assert idf[fish] == pytest.approx(math.log(1 + (3 - 2 + 0.5) / (2 + 0.5)))
    with pytest.raises(ValueError, match="empty corpus"):
        idf_from_frequencies(df, 0)


def test_lsr_idf_writes_a_table_the_encoder_loads(tmp_path, tiny_mlm_dir, capsys):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    out = tmp_path / "idf.json"
    assert main(["idf", "--corpus", str(corpus), "--tokenizer", str(tiny_mlm_dir), "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    assert "[CLS]" not in table and table["statin"] > table["and"]  # rare tokens weigh more
    from training.encoders import load_encoder

    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=out, device="cpu")
    ids, weights = encoder.encode_queries(["statin"]).row(0)
    assert weights.tolist() == pytest.approx([table["statin"]])


def test_lsr_index_reports_a_malformed_line_and_keeps_nothing(tmp_path, tiny_mlm_dir, tiny_idf_file, capsys):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [TINY_DOCS[0], '{"_id": "x"'])
    code = main(["index", "--corpus", str(corpus), "--encoder", str(tiny_mlm_dir), "--kind", "inference-free",
                 "--idf", str(tiny_idf_file), "--out", str(tmp_path / "idx")])
    assert code == 2
    assert f"{corpus}:2: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "idx").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_lsr_index_needs_kind_for_a_plain_directory(tmp_path, tiny_mlm_dir, capsys):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    code = main(["index", "--corpus", str(corpus), "--encoder", str(tiny_mlm_dir), "--out", str(tmp_path / "idx")])
    assert code == 2 and "--kind" in capsys.readouterr().err


def test_lsr_index_defaults_to_the_shipped_encoder(tmp_path, capsys, monkeypatch):
    from training.encoders import default_encoder_directory, load_encoder

    shipped = default_encoder_directory()
    files = {p.name: p.stat().st_size for p in shipped.iterdir()}
    assert sum(files.values()) < 10_000_000 and "idf.json" in files and "model.safetensors" in files
    encoder = load_encoder(shipped)
    assert encoder.config.kind == "inference-free" and not encoder.needs_model_for_queries
    assert next(encoder.model.parameters()).dtype.is_floating_point
    corpus = write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    assert main(["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx")]) == 0
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["encoder"]["identity"] == encoder.identity() and manifest["doc_count"] == len(TINY_DOCS)
    monkeypatch.setenv("LSR_DEFAULT_ENCODER", str(tmp_path / "nope"))
    assert main(["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx2")]) == 2
    assert "default encoder" in capsys.readouterr().err and not (tmp_path / "idx2").exists()
