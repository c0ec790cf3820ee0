from __future__ import annotations

import json
import math

import pytest

from lsr.cli import main
from lsr.encoders.idf import document_frequencies, idf_from_frequencies
from tests.conftest import TINY_DOCS, write_jsonl


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
    from lsr.encoders import load_encoder

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
    from lsr.encoders import default_encoder_directory, load_encoder

    shipped = default_encoder_directory()
    files = {p.name: p.stat().st_size for p in shipped.iterdir()}
    assert sum(files.values()) < 10_000_000 and "idf.json" in files and "model.safetensors" in files
    encoder = load_encoder(shipped)
    assert encoder.config.kind == "inference-free" and not encoder.needs_model_for_queries
    assert next(encoder.model.parameters()).dtype.is_floating_point
    corpus = write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    assert main(["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx")]) == 0
    summary = json.loads(capsys.readouterr().out)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["encoder"]["identity"] == encoder.identity() and summary["documents"] == len(TINY_DOCS)
    assert summary["truncated_documents"] == 0
    monkeypatch.setenv("LSR_DEFAULT_ENCODER", str(tmp_path / "nope"))
    assert main(["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx2")]) == 2
    assert "default encoder" in capsys.readouterr().err and not (tmp_path / "idx2").exists()


def test_sparse_batch_top_k_keeps_the_largest_weights():
    from lsr.sparse import SparseBatch

    batch = SparseBatch.from_rows([([1, 4, 7, 9], [0.5, 2.0, 1.0, 2.0]), ([3], [0.1]), ([], [])])
    pruned = batch.top_k(2)
    assert pruned.row(0)[0].tolist() == [4, 9] and pruned.row(0)[1].tolist() == [2.0, 2.0]
    assert pruned.row(1)[0].tolist() == [3] and len(pruned.row(2)[0]) == 0
    tie = SparseBatch.from_rows([([2, 5, 8], [1.0, 3.0, 1.0])]).top_k(2)
    assert tie.row(0)[0].tolist() == [2, 5]  # a tie goes to the lower token id
    assert batch.top_k(4) is batch
    with pytest.raises(ValueError, match="k >= 1"):
        batch.top_k(0)


def test_lsr_index_document_top_k_prunes_every_document(tmp_path, tiny_mlm_dir, tiny_idf_file, capsys):
    from lsr.index import Index

    corpus = write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS)
    common = ["index", "--corpus", str(corpus), "--encoder", str(tiny_mlm_dir), "--kind", "inference-free",
              "--idf", str(tiny_idf_file), "--impact-dtype", "float32"]
    assert main([*common, "--out", str(tmp_path / "full")]) == 0
    assert main([*common, "--out", str(tmp_path / "top3"), "--document-top-k", "3"]) == 0
    full, top3 = (Index.open(tmp_path / name, load_encoder=False) for name in ("full", "top3"))
    assert top3.manifest.build["document_top_k"] == 3 and full.manifest.build["document_top_k"] is None

    def vectors(index):
        postings = index.segments[0].postings()
        docs: dict[int, dict[int, float]] = {}
        for term in range(postings.shape[1]):
            for p in range(postings.indptr[term], postings.indptr[term + 1]):
                docs.setdefault(int(postings.indices[p]), {})[term] = float(postings.data[p])
        return docs

    whole, pruned = vectors(full), vectors(top3)
    assert max(len(v) for v in whole.values()) > 3
    for doc, weights in whole.items():
        want = sorted(weights, key=lambda t: (-weights[t], t))[:3]
        assert sorted(pruned[doc]) == sorted(want)
    assert main([*common, "--out", str(tmp_path / "bad"), "--document-top-k", "0"]) == 2
    assert "--document-top-k must be >= 1" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_lsr_index_add_delete_merge_change_an_index_in_place(tmp_path, tiny_mlm_dir, tiny_idf_file, capsys):
    from lsr import Index

    corpus = write_jsonl(tmp_path / "corpus.jsonl", TINY_DOCS[:3])
    assert main(["index", "--corpus", str(corpus), "--encoder", str(tiny_mlm_dir), "--kind", "inference-free",
                 "--idf", str(tiny_idf_file), "--store-documents", "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    more = write_jsonl(tmp_path / "more.jsonl", [TINY_DOCS[0], {**TINY_DOCS[1], "text": "changed"}, *TINY_DOCS[3:]])
    assert main(["index", "add", "--index", str(tmp_path / "idx"), "--corpus", str(more)]) == 0
    added = json.loads(capsys.readouterr().out)
    assert (added["added"], added["replaced"], added["unchanged"], added["generation"]) == (2, 1, 1, 2)
    (tmp_path / "ids.txt").write_text("d1\nnope\nd4\n")
    assert main(["index", "delete", "--index", str(tmp_path / "idx"), "--ids", str(tmp_path / "ids.txt")]) == 0
    deleted = json.loads(capsys.readouterr().out)
    assert (deleted["deleted"], deleted["unknown"], deleted["unknown_first"]) == (2, 1, ["nope"])
    index = Index.open(tmp_path / "idx", load_encoder=False)
    assert sorted(index.ids()) == ["d2", "d3", "d5"] and len(index.segments) == 2
    assert index.document("d2")["text"] == "changed"
    assert main(["index", "merge", "--index", str(tmp_path / "idx")]) == 0
    merged = json.loads(capsys.readouterr().out)
    assert merged["segments_after"] == 1 and merged["dropped_deleted"] == 3
    assert Index.open(tmp_path / "idx", load_encoder=False).segments[0].info.documents == 3
    assert main(["index", "add", "--index", str(tmp_path / "nope"), "--corpus", str(more)]) == 2
    assert "is not an lsr index" in capsys.readouterr().err


def test_lsr_index_keeps_metadata_declares_and_widens_fields(tmp_path, tiny_mlm_dir, tiny_idf_file, capsys):
    """A corpus line's `metadata` object is kept (typed by --field, the rest inferred); `lsr index schema` shows and
    widens the fields; a line whose metadata does not fit is refused with its file and line, nothing written."""
    from lsr import Engine, Index

    lines = [{**d, "metadata": {"year": 2000 + i, "lang": "en" if i % 2 else "de"}} for i, d in enumerate(TINY_DOCS)]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", lines)
    common = ["--encoder", str(tiny_mlm_dir), "--kind", "inference-free", "--idf", str(tiny_idf_file)]
    assert main(["index", "--corpus", str(corpus), *common, "--field", "year:float", "--out",
                 str(tmp_path / "idx")]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["metadata"] == {"fields": {"year": "float", "lang": "keyword"}, "unknown": "error"}
    engine = Engine(Index.open(tmp_path / "idx"))
    assert set(engine.search("statin fish", 5, "sparse", filter={"term": {"lang": "de"}}).ids) <= {"d1", "d3", "d5"}
    assert main(["index", "schema", "--index", str(tmp_path / "idx"), "--add", "lang:keywords", "--add",
                 "stars:integer"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["fields"] == {"year": "float", "lang": "keywords", "stars": "integer"} and shown["generation"] == 2
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"_id": "z", "text": "salt", "metadata": {"stars": "many"}}])
    assert main(["index", "add", "--index", str(tmp_path / "idx"), "--corpus", str(bad)]) == 2
    assert "document 'z': metadata field 'stars'" in capsys.readouterr().err
    assert Index.open(tmp_path / "idx", load_encoder=False).generation == 2
    assert main(["index", "--corpus", str(corpus), *common, "--field", "year", "--out", str(tmp_path / "x")]) == 2
    assert "NAME:TYPE" in capsys.readouterr().err


def test_lsr_eval_takes_a_filter(tmp_path, tiny_mlm_dir, tiny_idf_file, capsys):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    lines = [{**d, "metadata": {"lang": "en" if i % 2 else "de"}} for i, d in enumerate(TINY_DOCS)]
    write_jsonl(beir / "corpus.jsonl", lines)
    write_jsonl(beir / "queries.jsonl", [{"_id": "q1", "text": "statin breast cancer"}, {"_id": "q2", "text": "salt"}])
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td4\t1\n")
    assert main(["index", "--corpus", str(beir), "--encoder", str(tiny_mlm_dir), "--kind", "inference-free",
                 "--idf", str(tiny_idf_file), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    run = tmp_path / "run.trec"
    assert main(["eval", "--beir", str(beir), "--index", str(tmp_path / "idx"), "--k", "5", "--run", str(run),
                 "--filter", '{"term": {"lang": "en"}}']) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["filter"] == {"term": {"lang": "en"}}
    assert {line.split()[2] for line in run.read_text().splitlines()} <= {"d2", "d4"}
    assert main(["eval", "--beir", str(beir), "--index", str(tmp_path / "idx"), "--filter", '{"term": {"x": 1}}']) == 2
    assert "filter.term.x: unknown field" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["index", "--help"], ["collection", "create", "--help"],
                                  ["index", "--corpus", "/nonexistent/corpus", "--out", "OUT"],
                                  ["index", "add", "--index", "IDX", "--corpus", "/nonexistent/corpus"]])
def test_help_and_a_wrong_path_answer_before_torch_or_a_model_loads(argv, tmp_path):
    """A newcomer's first commands: help, and a mistyped corpus path, answered without importing torch or
    transformers (`python -X importtime -m lsr --help`: 0.3 s, not 1.6 s; the bad path: 0.3 s, not 4 s), and
    without a progress bar before the error."""
    import subprocess
    import sys

    argv = [a.replace("OUT", str(tmp_path / "out")).replace("IDX", str(tmp_path / "idx")) for a in argv]
    code = ("import sys\nfrom lsr.cli import main\ntry:\n    code = main(sys.argv[1:])\nexcept SystemExit as exit:\n"
            "    code = exit.code\nprint('IMPORTED', 'torch' in sys.modules, 'transformers' in sys.modules)\n"
            "sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "IMPORTED False False", done.stdout[-500:]
    if "--help" in argv:
        assert done.returncode == 0 and "usage: lsr" in done.stdout
    else:
        assert done.returncode == 2 and "does not exist" in done.stderr and "encoding documents" not in done.stderr
        assert not (tmp_path / "out").exists()


def test_the_index_usage_says_what_is_optional(capsys):
    with pytest.raises(SystemExit):
        main(["index", "--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert usage.startswith("usage: lsr index --corpus CORPUS --out DIR [options]")
    assert "lsr index OPERATION --index DIR" in usage and not usage.rstrip().endswith("OPERATION ...")
