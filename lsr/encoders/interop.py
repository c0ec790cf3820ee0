"""Model layouts lsr reads besides its own, and the sentence-transformers layout it writes.

Read (:func:`read_layout`, used by :func:`lsr.encoders.load_encoder`):

- **sentence-transformers ``SparseEncoder``** (v5 and after): ``modules.json`` naming either a siamese
  ``MLMTransformer`` (or ``Transformer`` with ``transformer_task: fill-mask``) + ``SpladePooling``, or one ``Router``
  (``router_config.json``) whose query route is a ``SparseStaticEmbedding`` (the inference-free query table as a
  module) and whose document route is the transformer + ``SpladePooling``. The pooling (max or sum) and the activation
  come from ``SpladePooling``'s ``config.json``. sentence-transformers keeps the special tokens' dimensions, so such a
  model loads with ``zero_special_tokens: false``: lsr computes what ``SparseEncoder`` computes.
- **OpenSearch's classic layout**: a Hugging Face ``*ForMaskedLM`` directory plus ``idf.json`` (``{token: weight}``),
  as opensearch-neural-sparse-encoding-doc-v1/v2 ship it, computed as their model cards do: max pooling,
  log(1 + ReLU), special tokens zeroed, queries = distinct tokens weighted by the table. A directory that also has
  ``modules.json`` (the v3 models) is read as sentence-transformers, whose module configs state the activation.

Anything else that either layout can express but lsr would not compute the same way (prompts, a top-k cut of the
vectors, cosine similarity, lower-casing outside the tokenizer, an asymmetric pair of transformers) is refused with
the file and the reason.

Written (:func:`save_sentence_transformers`): the same two shapes, with the module class paths of
sentence-transformers 5.0 (which 6.x still resolves), so ``SparseEncoder(DIR)`` returns lsr's vectors.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsr.encoders.config import ENCODER_CONFIG_FILE, EncoderConfig
from lsr.errors import EncoderError, LsrError

MODULES_FILE = "modules.json"
ROUTER_FILE = "router_config.json"
ST_CONFIG_FILE = "config_sentence_transformers.json"
SBERT_CONFIG_FILE = "sentence_bert_config.json"
CLASSIC_IDF_FILE = "idf.json"

# sentence-transformers activation name -> lsr's (their "relu" is log(1 + ReLU); their "log1p_relu" logs twice)
ST_ACTIVATIONS = {"relu": "log1p_relu", "log1p_relu": "log1p_log1p_relu"}
LSR_TO_ST_ACTIVATION = {lsr: st for st, lsr in ST_ACTIVATIONS.items()}
TRANSFORMER_TYPES = ("MLMTransformer", "Transformer")
STATIC_TYPES = ("SparseStaticEmbedding", "IDF")  # IDF: the name before sentence-transformers 5.0's release
# What lsr writes: sentence-transformers 5.0's class paths, still resolved by 6.x.
ST_TYPES = {
    "router": "sentence_transformers.models.Router",
    "transformer": "sentence_transformers.sparse_encoder.models.MLMTransformer",
    "pooling": "sentence_transformers.sparse_encoder.models.SpladePooling",
    "static": "sentence_transformers.sparse_encoder.models.SparseStaticEmbedding",
}
# The bias given to the special tokens' logits on export, so SpladePooling (which keeps every dimension) gives them
# 0 as lsr does: far below any logit a real model produces, and finite in fp16 (padding multiplies logits by 0).
SPECIAL_TOKEN_BIAS = -1.0e4


@dataclass
class Layout:
    """What a model directory holds, in lsr's terms: the config, where the Hugging Face model is, and for
    inference-free encoders the query table (a vector over the model's vocabulary, or a {token: weight} file)."""

    name: str  # "lsr" | "sentence-transformers" | "opensearch" | "huggingface"
    model_dir: Path
    config: EncoderConfig | None = None
    query_weights: np.ndarray | None = None
    query_tokenizer_dir: Path | None = None
    idf_file: Path | None = None


def detect_layout(directory: Path) -> str:
    """lsr's own directory first, then sentence-transformers (``modules.json``: it states pooling and activation),
    then OpenSearch's classic one; a bare Hugging Face directory needs ``--kind``."""
    if (directory / ENCODER_CONFIG_FILE).exists():
        return "lsr"
    if (directory / MODULES_FILE).exists() and _sparse_modules(directory):
        return "sentence-transformers"
    if (directory / CLASSIC_IDF_FILE).exists() and _masked_lm(directory / "config.json"):
        return "opensearch"
    return "huggingface"


def _sparse_modules(directory: Path) -> bool:
    """A sentence-transformers directory of a SparseEncoder (a dense SentenceTransformer, such as all-MiniLM-L6-v2,
    also has ``modules.json``: it is read as a Hugging Face model given ``--kind dense``)."""
    card = directory / ST_CONFIG_FILE
    if card.exists():
        try:
            if json.loads(card.read_text()).get("model_type") == "SparseEncoder":
                return True
        except (ValueError, AttributeError):
            pass
    try:
        kinds = {_short_type(m.get("type", "")) for m in json.loads((directory / MODULES_FILE).read_text())}
    except (ValueError, AttributeError, TypeError):
        return True  # broken: read_sentence_transformers names the problem
    return bool(kinds & {"Router", "SpladePooling", "MLMTransformer", *STATIC_TYPES})


def _read_json(path: Path, what: str, expect: type = dict) -> dict | list:
    """A JSON file that must hold an object (or, ``expect=list``, an array)."""
    if not path.exists():
        raise EncoderError(f"{path} is missing: {what}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EncoderError(f"{path} is not valid JSON ({exc}): {what}") from None
    if not isinstance(data, expect):
        raise EncoderError(f"{path}: expected a JSON {'object' if expect is dict else 'array'}, found "
                           f"{type(data).__name__}: {what}")
    return data


def _optional_json(path: Path) -> dict:
    return _read_json(path, "") if path.exists() else {}


def _masked_lm(config_file: Path) -> bool:
    try:
        architectures = json.loads(config_file.read_text()).get("architectures") or []
        return any(str(a).endswith("ForMaskedLM") for a in architectures)
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def _short_type(type_path: str) -> str:
    return str(type_path).rsplit(".", 1)[-1]


def _max_length(model_dir: Path, configured: int | None) -> int:
    """A transformer's window: sentence-transformers' max_seq_length, else the tokenizer's and the model's limit."""
    limits = []
    config = _read_json(model_dir / "config.json", "the transformer's Hugging Face config")
    positions = config.get("max_position_embeddings")
    if positions:
        limits.append(int(positions))
    value = _optional_json(model_dir / "tokenizer_config.json").get("model_max_length")
    if isinstance(value, (int, float)) and 0 < value < 1e9:
        limits.append(int(value))
    if configured:
        return int(configured)
    return min(limits) if limits else 512


# sentence_bert_config.json keys lsr reads (the rest must hold their defaults, or the directory is refused)
SBERT_KEYS = {"max_seq_length", "do_lower_case", "transformer_task", "query_length", "document_length",
              "modality_config", "module_output_name", "unpad_inputs", "processing_kwargs", "query_expansion",
              "tokenizer_args", "model_args", "config_args", "backend"}


def _check_transformer(folder: Path, type_path: str, source: Path) -> tuple[int, int]:
    """The transformer module's folder must hold a masked-LM; returns its (query, document) windows, special tokens
    included, as sentence-transformers truncates: the task's ``query_length`` / ``document_length``, else
    ``max_seq_length``, else the tokenizer's and the model's limit."""
    if not _masked_lm(folder / "config.json"):
        raise EncoderError(f"{source}: the transformer {folder} is not a *ForMaskedLM model (config.json "
                           "architectures); a sparse encoder needs the MLM head")
    sbert = folder / SBERT_CONFIG_FILE
    settings = _optional_json(sbert)
    unknown = sorted(set(settings) - SBERT_KEYS)
    if unknown:
        raise EncoderError(f"{sbert}: settings {unknown} are unknown to lsr, which cannot tell whether they change "
                           "the vectors")
    task = settings.get("transformer_task", "fill-mask" if _short_type(type_path) == "MLMTransformer" else None)
    if task != "fill-mask":
        raise EncoderError(f"{sbert}: transformer_task is {task!r}; lsr reads a fill-mask (MLM) transformer only")
    if settings.get("do_lower_case"):
        raise EncoderError(f"{sbert}: do_lower_case is true (sentence-transformers lower-cases the text before its "
                           "tokenizer); lsr tokenizes as the tokenizer is configured: set it false, or use an uncased "
                           "tokenizer")
    for key in ("processing_kwargs", "query_expansion", "tokenizer_args", "config_args"):
        if settings.get(key):
            raise EncoderError(f"{sbert}: {key} {settings[key]!r} changes how sentence-transformers tokenizes or "
                               "builds the model; lsr reproduces the defaults only: remove it")
    base = _max_length(folder, settings.get("max_seq_length"))
    windows = []
    for key in ("query_length", "document_length"):
        value = settings.get(key)
        if value is not None and (not isinstance(value, int) or value < 2):
            raise EncoderError(f"{sbert}: {key} {value!r} is not a window of tokens")
        windows.append(value or base)
    return windows[0], windows[1]


def _pooling(folder: Path) -> tuple[str, str]:
    path = folder / "config.json"
    settings = _read_json(path, "SpladePooling's settings (pooling_strategy, activation_function)")
    strategy = settings.get("pooling_strategy", "max")
    activation = settings.get("activation_function", "relu")
    if not isinstance(strategy, str) or strategy not in ("max", "sum"):
        raise EncoderError(f"{path}: pooling_strategy {strategy!r} is unknown; lsr computes max and sum")
    if not isinstance(activation, str) or activation not in ST_ACTIVATIONS:
        raise EncoderError(f"{path}: activation_function {activation!r} is unknown; lsr computes "
                           f"{', '.join(ST_ACTIVATIONS)} (log1p after it, as SpladePooling does)")
    return strategy, ST_ACTIVATIONS[activation]


def _check_st_config(directory: Path) -> None:
    path = directory / ST_CONFIG_FILE
    if not path.exists():
        return
    settings = _read_json(path, "")
    prompts = settings.get("prompts") or {}
    prompts = {k: v for k, v in prompts.items() if v} if isinstance(prompts, dict) else prompts
    if prompts:
        raise EncoderError(f"{path}: prompts {prompts} are prepended to texts by sentence-transformers; lsr encodes "
                           "texts as given: remove them, or prepend them to your queries and documents yourself")
    if settings.get("max_active_dims"):
        raise EncoderError(f"{path}: max_active_dims {settings['max_active_dims']} keeps only the top dimensions of "
                           "every vector; lsr keeps them all: remove it (an index's --document-top-k cuts documents)")
    similarity = settings.get("similarity_fn_name")
    if similarity not in (None, "dot"):
        raise EncoderError(f"{path}: similarity_fn_name {similarity!r}; lsr scores sparse vectors by dot product")


def _static_weights(folder: Path, source: Path) -> np.ndarray:
    settings_file = folder / "config.json"
    settings = _optional_json(settings_file)
    if settings.get("path"):
        raise EncoderError(f"{settings_file}: the query table is a path ({settings['path']}); put the table in the "
                           "module (SparseStaticEmbedding.save writes model.safetensors)")
    weights_file = folder / "model.safetensors"
    try:
        if weights_file.exists():
            from safetensors.numpy import load_file

            tensors = load_file(str(weights_file))
        elif (folder / "pytorch_model.bin").exists():
            import torch

            weights_file = folder / "pytorch_model.bin"
            tensors = {k: v.float().numpy() for k, v in
                       torch.load(weights_file, map_location="cpu", weights_only=True).items()}
        else:
            raise EncoderError(f"{source}: {folder} has no model.safetensors: the query table of a "
                               "SparseStaticEmbedding is missing")
    except EncoderError:
        raise
    except Exception as exc:  # safetensors' and torch's own errors on a damaged file
        raise EncoderError(f"{weights_file} cannot be read ({type(exc).__name__}: {exc})") from None
    if "weight" not in tensors or np.asarray(tensors["weight"]).ndim != 1:
        raise EncoderError(f"{weights_file}: expected one 1-d tensor 'weight' (a weight per vocabulary entry), "
                           f"found {sorted(tensors)}")
    weights = np.asarray(tensors["weight"], dtype=np.float32)
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise EncoderError(f"{weights_file}: {int(bad.sum())} query weights are negative or not finite (first: id "
                           f"{first}, {weights[first]}); lsr's query tables are non-negative")
    return weights


def _resolve_folder(directory: Path, module_path: str, module_id: str) -> Path:
    """A module's folder; a transformer stored at the root (OpenSearch's v3 uploads keep the model there) is found
    there when its own folder does not exist."""
    candidate = directory / module_path if module_path else directory
    if candidate.is_dir() and (candidate / "config.json").exists():
        return candidate
    if not candidate.exists() and _masked_lm(directory / "config.json"):
        return directory
    raise EncoderError(f"{directory}: module {module_id!r} has no folder with its files ({candidate})")


def read_sentence_transformers(directory: Path) -> Layout:
    modules_file = directory / MODULES_FILE
    modules = _read_json(modules_file, "the sentence-transformers module list", expect=list)
    if not modules or not all(isinstance(m, dict) and isinstance(m.get("type"), str) for m in modules):
        raise EncoderError(f"{modules_file}: expected a non-empty list of modules, each with a \"type\"")
    _check_st_config(directory)
    kinds = [_short_type(m.get("type", "")) for m in modules]
    supported = "a siamese MLMTransformer + SpladePooling, or a Router whose query route is a SparseStaticEmbedding"
    if kinds == ["Router"]:
        return _read_router(directory, Path(modules[0].get("path") or ""), supported)
    if len(kinds) == 2 and kinds[0] in TRANSFORMER_TYPES and kinds[1] == "SpladePooling":
        folder = _resolve_folder(directory, modules[0].get("path") or "", kinds[0])
        query_window, document_window = _check_transformer(folder, modules[0]["type"], modules_file)
        pooling, activation = _pooling(directory / (modules[1].get("path") or "1_SpladePooling"))
        config = EncoderConfig(kind="splade", max_query_length=query_window, max_document_length=document_window,
                               pooling=pooling,
                               activation=activation, zero_special_tokens=False,
                               extra={"layout": "sentence-transformers", "source": str(directory)})
        return Layout("sentence-transformers", folder, config)
    raise EncoderError(f"{modules_file}: modules {kinds} are not a sparse encoder lsr reproduces (it reads "
                       f"{supported})")


def _read_router(directory: Path, router_path: Path, supported: str) -> Layout:
    base = directory / router_path
    router_file = base / ROUTER_FILE
    if not router_file.exists() and (base / "config.json").exists() and "types" in _read_json(base / "config.json", ""):
        router_file = base / "config.json"  # the Router's file before it had its own name
    router = _read_json(router_file, "the Router's routes (types, structure)")
    types, structure = router.get("types") or {}, router.get("structure") or {}
    if not isinstance(types, dict) or not isinstance(structure, dict) \
            or not all(isinstance(route, list) for route in structure.values()):
        raise EncoderError(f"{router_file}: 'types' and 'structure' must map names to module types and routes")
    if "query" not in structure or "document" not in structure:
        raise EncoderError(f"{router_file}: routes {sorted(structure)}; lsr needs a 'query' and a 'document' route")
    _check_route_mappings(router_file, (router.get("parameters") or {}).get("route_mappings") or {})
    document, query = structure["document"], structure["query"]
    document_kinds = [_short_type(types.get(m, "")) for m in document]
    query_kinds = [_short_type(types.get(m, "")) for m in query]
    if len(document) != 2 or document_kinds[0] not in TRANSFORMER_TYPES or document_kinds[1] != "SpladePooling":
        raise EncoderError(f"{router_file}: the document route is {document_kinds}; lsr reads a transformer + "
                           f"SpladePooling ({supported})")
    folder = _resolve_folder(base, document[0], document[0])
    query_window, document_window = _check_transformer(folder, types[document[0]], router_file)
    pooling, activation = _pooling(base / document[1])
    extra = {"layout": "sentence-transformers", "source": str(directory)}
    if query == document:
        config = EncoderConfig(kind="splade", max_query_length=query_window, max_document_length=document_window,
                               pooling=pooling, activation=activation, zero_special_tokens=False, extra=extra)
        return Layout("sentence-transformers", folder, config)
    if len(query) != 1 or query_kinds[0] not in STATIC_TYPES:
        raise EncoderError(f"{router_file}: the query route is {query_kinds}; lsr encodes queries with the document "
                           "model (the same modules) or a SparseStaticEmbedding table, not another transformer")
    static = base / query[0]
    weights = _static_weights(static, router_file)
    query_window = _max_length_of_tokenizer(static)  # content tokens: load_encoder adds the special tokens
    config = EncoderConfig(kind="inference-free", max_query_length=query_window, max_document_length=document_window,
                           pooling=pooling, activation=activation, zero_special_tokens=False, extra=extra)
    return Layout("sentence-transformers", folder, config, query_weights=weights, query_tokenizer_dir=static)


NO_LIMIT = 1_000_000  # a tokenizer without model_max_length does not truncate


def _max_length_of_tokenizer(folder: Path) -> int:
    """SparseStaticEmbedding truncates a query to its tokenizer's model_max_length tokens (no special tokens);
    lsr's max_query_length counts them, so the two are set apart by the special tokens (added by the caller)."""
    value = _optional_json(folder / "tokenizer_config.json").get("model_max_length")
    return int(value) if isinstance(value, (int, float)) and 0 < value < 1e9 else NO_LIMIT


def _check_route_mappings(router_file: Path, mappings: dict) -> None:
    """(task, modality) -> route: only a mapping that sends each task to its own route keeps lsr's reading."""
    import ast

    for key, route in (mappings.items() if isinstance(mappings, dict) else [("?", mappings)]):
        try:
            task = ast.literal_eval(key)[0] if isinstance(key, str) else key[0]
        except (ValueError, SyntaxError, TypeError, IndexError):
            task = None
        if task != route:
            raise EncoderError(f"{router_file}: route_mappings sends {key} to the {route!r} route; lsr sends queries "
                               "to 'query' and documents to 'document' only")


def read_opensearch(directory: Path) -> Layout:
    length = _max_length(directory, None)
    config = EncoderConfig(kind="inference-free", max_query_length=length, max_document_length=length,
                           extra={"layout": "opensearch", "source": str(directory),
                                  "computed_as": "max pooling, log(1 + ReLU), special tokens zeroed (the "
                                                 "doc-v1/v2 model cards)"})
    return Layout("opensearch", directory, config, idf_file=directory / CLASSIC_IDF_FILE)


def read_layout(directory: Path) -> Layout:
    name = detect_layout(directory)
    try:
        if name == "sentence-transformers":
            return read_sentence_transformers(directory)
        if name == "opensearch":
            return read_opensearch(directory)
    except LsrError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a file of the right name, of another shape
        raise EncoderError(f"{directory}: its {name} files are malformed ({type(exc).__name__}: {exc})") from None
    return Layout(name, directory)


def check_query_tokenizer(query_dir: Path, tokenizer, source: Path) -> None:
    """The query table's tokenizer must be the document model's: same vocabulary, same splitting."""
    from transformers import AutoTokenizer

    try:
        query_tokenizer = AutoTokenizer.from_pretrained(str(query_dir))
    except (OSError, ValueError) as exc:
        raise EncoderError(f"{query_dir}: the query table's tokenizer cannot be loaded ({exc})") from None
    if query_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise EncoderError(f"{query_dir}: the query table's tokenizer has another vocabulary than the document model "
                           f"({len(query_tokenizer)} vs {len(tokenizer)} tokens): the table's weights would land on "
                           "other tokens; export both routes from one model")
    probe = "Vitamin D and Depression: a Statin's CO2 study"
    if query_tokenizer(probe, add_special_tokens=False)["input_ids"] != tokenizer(
            probe, add_special_tokens=False)["input_ids"]:
        raise EncoderError(f"{query_dir}: the query table's tokenizer splits text differently from the document "
                           "model's (casing or normalization); export both routes from one tokenizer")


# -- writing -----------------------------------------------------------------------------------------------------------
def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _export_model(encoder):
    """A CPU fp32 copy of the encoder's model; with special tokens zeroed, their logits biased far below zero."""
    from lsr.encoders.mlm import split_mlm_head

    model = copy.deepcopy(encoder.model).cpu().float()
    if encoder.config.zero_special_tokens and encoder.special_ids:
        decoder = split_mlm_head(model)[1]
        if decoder.bias is None:
            raise EncoderError(f"{type(model).__name__}'s vocabulary projection has no bias: lsr cannot make "
                               "SpladePooling zero the special tokens, so the vectors would differ")
        import torch

        with torch.no_grad():
            decoder.bias[torch.as_tensor(encoder.special_ids)] = SPECIAL_TOKEN_BIAS
    return model


def _write_transformer(folder: Path, model, tokenizer, max_seq_length: int) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    _write_json(folder / SBERT_CONFIG_FILE, {"max_seq_length": max_seq_length, "do_lower_case": False})


def _write_pooling(folder: Path, config: EncoderConfig) -> None:
    _write_json(folder / "config.json", {"pooling_strategy": config.pooling,
                                         "activation_function": LSR_TO_ST_ACTIVATION[config.activation]})


def save_sentence_transformers(encoder, directory: str | Path) -> Path:
    """Write ``encoder`` (siamese or inference-free) as a sentence-transformers ``SparseEncoder`` directory.

    Siamese: ``MLMTransformer`` at the root + ``1_SpladePooling``. Inference-free: a ``Router`` whose query route is
    ``query_0_SparseStaticEmbedding`` (lsr's query table, special tokens at 0, its tokenizer truncating where lsr
    does) and whose document route is ``document_0_MLMTransformer`` + ``document_1_SpladePooling``. Written into a
    temporary sibling, then put in place.
    """
    from lsr.encoders.sparse import SparseEncoder

    if not isinstance(encoder, SparseEncoder):
        raise EncoderError("only sparse encoders export to the sentence-transformers SparseEncoder layout; a dense "
                           "encoder directory is already a sentence-transformers-readable Hugging Face model")
    directory = Path(directory).resolve()
    if directory.exists() and (not directory.is_dir() or (any(directory.iterdir()) and not is_lsr_export(directory))):
        raise EncoderError(f"{directory} exists and is not an earlier lsr export: write to a new or empty folder "
                           "(an export replaces its folder)")
    tmp = directory.with_name(directory.name + ".tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_export(encoder, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory


def is_lsr_export(directory: Path) -> bool:
    try:
        return "lsr" in json.loads((directory / ST_CONFIG_FILE).read_text())
    except (OSError, ValueError, TypeError):
        return False


def _write_export(encoder, tmp: Path) -> None:
    import transformers

    from lsr.encoders.sparse import InferenceFreeEncoder

    transformers.utils.logging.disable_progress_bar()
    config = encoder.config
    model = _export_model(encoder)
    card = {"model_type": "SparseEncoder", "similarity_fn_name": "dot", "prompts": {"query": "", "document": ""},
            "default_prompt_name": None, "lsr": {"kind": config.kind, "identity": encoder.identity()}}
    if isinstance(encoder, InferenceFreeEncoder):
        from safetensors.numpy import save_file

        _write_transformer(tmp / "document_0_MLMTransformer", model, encoder.tokenizer, config.max_document_length)
        _write_pooling(tmp / "document_1_SpladePooling", config)
        static = tmp / "query_0_SparseStaticEmbedding"
        static.mkdir()
        query_tokenizer = copy.deepcopy(encoder.tokenizer)
        # lsr keeps max_query_length tokens, special tokens included; SparseStaticEmbedding adds none
        query_tokenizer.model_max_length = max(1, config.max_query_length - encoder.tokenizer.num_special_tokens_to_add())
        query_tokenizer.save_pretrained(static)
        save_file({"weight": np.ascontiguousarray(encoder.query_weights(), dtype=np.float32)},
                  str(static / "model.safetensors"))
        _write_json(static / "config.json", {"frozen": True})
        _write_json(tmp / ROUTER_FILE, {
            "types": {"query_0_SparseStaticEmbedding": ST_TYPES["static"],
                      "document_0_MLMTransformer": ST_TYPES["transformer"],
                      "document_1_SpladePooling": ST_TYPES["pooling"]},
            "structure": {"query": ["query_0_SparseStaticEmbedding"],
                          "document": ["document_0_MLMTransformer", "document_1_SpladePooling"]},
            "parameters": {"default_route": "document", "allow_empty_key": True},
        })
        _write_json(tmp / MODULES_FILE, [{"idx": 0, "name": "0", "path": "", "type": ST_TYPES["router"]}])
    else:
        _write_transformer(tmp, model, encoder.tokenizer, config.max_document_length)
        _write_pooling(tmp / "1_SpladePooling", config)
        _write_json(tmp / MODULES_FILE, [
            {"idx": 0, "name": "0", "path": "", "type": ST_TYPES["transformer"]},
            {"idx": 1, "name": "1", "path": "1_SpladePooling", "type": ST_TYPES["pooling"]},
        ])
    _write_json(tmp / ST_CONFIG_FILE, card)
    (tmp / "README.md").write_text(_model_card(encoder))


def _model_card(encoder) -> str:
    config = encoder.config
    lines = [
        "---", "library_name: sentence-transformers", "tags: [sparse-encoder, splade, lsr]", "---", "",
        f"# lsr {config.kind} encoder (identity {encoder.identity()})", "",
        "Exported by `lsr export-model --format sentence-transformers`. Load it with",
        "`sentence_transformers.SparseEncoder(DIR)` (`encode_query`, `encode_document`) or with `lsr.load_encoder(DIR)`.",
        "",
        f"- pooling: {config.pooling}; activation: {config.activation} "
        f"(SpladePooling `{LSR_TO_ST_ACTIVATION[config.activation]}`)",
        f"- documents: {config.max_document_length} tokens at most (special tokens included)",
    ]
    if config.kind == "inference-free":
        lines.append(f"- queries: no model; each distinct token weighs its table weight (first "
                     f"{config.max_query_length} tokens, special tokens included)")
    else:
        lines.append(f"- queries: the same model. sentence-transformers cuts them at {config.max_document_length} "
                     f"tokens, lsr at {config.max_query_length}: longer queries differ")
    if config.zero_special_tokens:
        lines.append(f"- the special tokens' vocabulary logits carry a bias of {SPECIAL_TOKEN_BIAS:g}, so "
                     "SpladePooling gives them 0, as lsr does")
    return "\n".join(lines) + "\n"
