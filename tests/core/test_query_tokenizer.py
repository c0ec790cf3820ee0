"""The torch-free query path of an inference-free encoder: QueryTokenizer tokenizes as transformers does, an index's
stored inference-free encoder answers queries exactly as the eagerly loaded one, and a process that opens an index and
searches it imports neither torch nor transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lsr.encoders import load_encoder
from lsr.encoders.tokenizer import QueryTokenizer
from tests.conftest import NFCORPUS, SPLADE_TINY

TRICKY = ["", " ", "Statins & BREAST cancer?!", "naïve café — résumé", "[SEP] [CLS] literal specials [MASK]",
          "x" * 600, "数字 and emoji 🙂", "tab\tand\nnewline", "don't won't 3.14 1,000 e-mail", "##s ##ing"]


def _queries(limit: int = 400) -> list[str]:
    path = NFCORPUS / "queries.jsonl"
    if not path.exists():
        return []
    with path.open() as handle:
        return [json.loads(line)["text"] for _, line in zip(range(limit), handle)]


@pytest.fixture(scope="module")
def saved_default(tmp_path_factory):
    """The shipped encoder as an index stores it (save_pretrained writes tokenizer.json; the package has vocab.txt)."""
    return load_encoder().save(tmp_path_factory.mktemp("enc") / "encoder")


@pytest.fixture(params=["saved default", "splade-tiny"])
def folder(request, saved_default):
    if request.param == "splade-tiny":
        if not (SPLADE_TINY / "tokenizer.json").exists():
            pytest.skip(f"{SPLADE_TINY} (../shared) is not here")
        return SPLADE_TINY
    return saved_default


def test_query_tokenizer_tokenizes_as_transformers(folder):
    from transformers import AutoTokenizer

    full = AutoTokenizer.from_pretrained(str(folder))
    light = QueryTokenizer(folder, lambda: pytest.fail("a query call loaded the transformers tokenizer"))
    texts = TRICKY + _queries()
    assert len(light) == len(full)
    assert light.all_special_ids == sorted(set(full.all_special_ids))
    assert light.num_special_tokens_to_add() == full.num_special_tokens_to_add()
    assert light.get_vocab() == full.get_vocab()
    assert light.convert_ids_to_tokens(range(len(full))) == full.convert_ids_to_tokens(list(range(len(full))))
    assert light(texts, add_special_tokens=False)["input_ids"] == full(texts, add_special_tokens=False)["input_ids"]
    for room in (1, 5, 62):
        assert (light(texts, add_special_tokens=False, truncation=True, max_length=room)["input_ids"]
                == full(texts, add_special_tokens=False, truncation=True, max_length=room)["input_ids"])


def test_other_calls_go_to_the_transformers_tokenizer(saved_default):
    folder = saved_default
    loads = []

    def load_full():
        from transformers import AutoTokenizer

        loads.append(1)
        return AutoTokenizer.from_pretrained(str(folder))

    light = QueryTokenizer(folder, load_full)
    light(["fish oil"], add_special_tokens=False)
    assert loads == []
    wrapped = light(["fish oil"], truncation=True, max_length=8)["input_ids"][0]  # special tokens: the full one
    assert loads == [1] and wrapped[0] == light.cls_token_id and wrapped[-1] == light.sep_token_id
    light(["fish oil"], add_special_tokens=False, return_offsets_mapping=True)
    assert light.pad_token_id == 0 and loads == [1]  # (attributes too, and it loads once)


def test_a_broken_tokenizer_file_is_named(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(Exception, match="tokenizer.json"):
        QueryTokenizer(tmp_path, lambda: None)


def test_stored_inference_free_encoder_encodes_queries_as_the_eager_one(saved_default):
    folder = saved_default
    eager = load_encoder(folder)
    lazy = load_encoder(folder, identity=eager.identity())
    assert isinstance(lazy.tokenizer, QueryTokenizer) and lazy._model is None
    texts = TRICKY + _queries()
    a, b = eager.encode_queries(texts), lazy.encode_queries(texts)
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.weights, b.weights)
    assert lazy._model is None  # queries never loaded the model
    docs = ["statins lower cholesterol", "green tea and the heart"]
    d_eager, d_lazy = eager.encode_documents(docs), lazy.encode_documents(docs)  # the model and tokenizer load now
    assert np.array_equal(d_eager.indices, d_lazy.indices) and np.allclose(d_eager.weights, d_lazy.weights)
    assert lazy.identity(computed=True) == eager.identity()


def test_searching_an_inference_free_index_imports_no_torch(tmp_path):
    from lsr.index.builder import build

    build(ids=["d0", "d1", "d2"], texts=["statins lower cholesterol", "green tea and the heart", "fish oil"],
          path=tmp_path / "idx")
    code = ("import sys; from lsr import Engine; engine = Engine.open(sys.argv[1]); "
            "hits = engine.search('tea heart', k=2); "
            "print(hits.ids[0], 'torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "idx")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["d1", "False", "False"], out.stdout
