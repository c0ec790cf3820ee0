"""``lsr index --ray [ADDRESS]``: documents encoded by a Ray cluster (extra ``lsr[ray]``).

The driver reads the corpus (the same reader and checks as a local build) and plans the same chunks a local build
encodes (``--chunk-documents`` documents each, default 2048). The chunks become a Ray dataset, one row a chunk, and
``map_batches`` runs them through a pool of actors (one per GPU where the cluster has GPUs, else one per
``--ray-cpus-per-actor`` CPUs), each holding the index's encoders, loaded from the index folder (every node must see
that path: a shared file system, or one machine). The encoded chunks come back in order and the driver writes the
segment (or the Milvus inserts) as a local build does. Every chunk is encoded by the same code
(:func:`lsr.index.encoding.encode_chunk`) on the same documents in the same order, so on CPU the vectors are the local
build's, bit for bit, and the manifest's identity is the same.
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lsr.errors import BackendUnavailable, InvalidInput, MissingDependency, Unavailable


def require():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependency("--ray needs the `ray` extra: pip install 'lsr[ray]' (Ray Data)") from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """A cluster address (``host:port`` of the head's GCS) must answer within ``timeout`` seconds; ray.init would
    otherwise wait minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidInput(f"--ray {address!r}: give the head's host:port (e.g. 127.0.0.1:6379), or no value to "
                           "start a local Ray instance")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BackendUnavailable(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one (`ray start "
                          "--head`) or fix --ray") from None


def connect(address: str | None):
    ray = require()
    if ray.is_initialized():
        return ray
    if address:
        check_address(address)
    import logging

    ray.init(address=address or None, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the driver's bar says what Ray Data's INFO lines say
    return ray


class ChunkEncoder:
    """A Ray Data actor: the index's encoders, loaded once; each call encodes the chunks of one batch."""

    def __init__(self, directory: str, batch_size: int, dtype: str | None) -> None:
        import torch

        from lsr.encoders import load_encoder
        from lsr.index.manifest import Manifest

        folder = Path(directory)
        self.manifest = Manifest.load(folder)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoder = load_encoder(folder / self.manifest.encoder["directory"], device=device, dtype=dtype)
        self.dense = (load_encoder(folder / self.manifest.dense["directory"], device=device, dtype=dtype)
                      if self.manifest.dense else None)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        from lsr.index.encoding import encode_chunk

        payloads = [pickle.dumps(encode_chunk(self.encoder, self.dense, self.manifest, list(texts), self.batch_size))
                    for texts in batch["texts"]]
        return {"position": np.asarray(batch["position"]), "payload": np.array(payloads, dtype=object)}


def ray_chunk_encoder(directory: Path, address: str | None, batch_size: int, actors: int | None = None,
                      cpus_per_actor: float = 1.0, dtype: str | None = None, progress=None, window: int = 64):
    """An ``encode_chunks`` for :meth:`lsr.index.writer.IndexWriter.add`: chunks of documents in, each chunk's
    :class:`~lsr.index.writer.EncodedChunk` out, in order, encoded on the Ray cluster at ``address`` (None: a local
    Ray instance). The writer hands it ``window`` chunks at a time, one Ray dataset (and actor pool) each: the
    driver and the object store hold one window's texts, not the corpus's."""
    ray = connect(address)

    def encode_chunks(chunks: list[list]) -> Iterator:
        if not chunks:
            return
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        size = actors or (gpus if gpus else max(1, int(resources.get("CPU", 1) // cpus_per_actor)))
        size = max(1, min(size, len(chunks)))
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the driver's bar counts documents
        items = [{"position": i, "texts": [d.contents for d in chunk]} for i, chunk in enumerate(chunks)]
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        encoded = dataset.map_batches(
            ChunkEncoder, fn_constructor_kwargs={"directory": str(Path(directory).absolute()),
                                                 "batch_size": batch_size, "dtype": dtype},
            batch_size=1, compute=ray.data.ActorPoolStrategy(size=size), num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else cpus_per_actor, batch_format="numpy")
        expected = 0
        for row in encoded.iter_rows():
            if int(row["position"]) != expected:
                raise Unavailable(f"Ray returned chunk {int(row['position'])} where {expected} was due; rerun")
            chunk = pickle.loads(row["payload"])
            if progress is not None:
                progress(len(chunks[expected]))
            expected += 1
            yield chunk

    encode_chunks.window = max(1, window)
    return encode_chunks


def cluster_summary() -> dict:
    ray = require()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    resources = ray.cluster_resources()
    return {"nodes": len(nodes), "cpus": resources.get("CPU", 0), "gpus": resources.get("GPU", 0)}
