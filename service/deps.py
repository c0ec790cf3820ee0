"""What the routers share: the dependencies that hand a route its collection (and so its engine), checked against
the caller's API key, and the JSON answers.

Every search and document route is served twice: at the root (``/search``: the collection ``default``) and under
``/collections/{name}/`` (the same router, see :func:`lsr.service.app.create_app`). The dependencies read the
collection's name from the path, check the key's scope for it (:mod:`lsr.service.keys`: 403) and look it up (404,
or 503 for one that cannot be served)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.responses import Response

from lsr.engine import Engine
from lsr.service.collections import DEFAULT, Collection
from lsr.service.keys import check, grant_of
from lsr.service.settings import Settings


def collection_for(request: Request, scope: str) -> Collection:
    """The collection the path names (``default`` at the root), when the caller's key covers ``scope`` on it."""
    name = request.path_params.get("name", DEFAULT)
    check(grant_of(request), scope, name)
    collection = request.app.state.collections.get(name)
    request.scope.setdefault("state", {})["lsr_collection"] = name  # (a known name only: the metrics' label)
    return collection


async def reading(request: Request) -> Collection:  # async: a plain def dependency costs a thread-pool hop
    return collection_for(request, "read")


async def writing(request: Request) -> Collection:
    return collection_for(request, "write")


async def administering(request: Request) -> Collection:
    return collection_for(request, "admin")


async def get_engine(request: Request) -> Engine:
    return collection_for(request, "read").engine


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def collection_name(name: Annotated[str, Path(description="the collection (GET /collections lists them)")]):
    """Only documents the ``{name}`` of the routes under ``/collections/{name}/`` (the routes read it themselves)."""
    return name


EngineDep = Annotated[Engine, Depends(get_engine)]
ReadDep = Annotated[Collection, Depends(reading)]
WriteDep = Annotated[Collection, Depends(writing)]
AdminDep = Annotated[Collection, Depends(administering)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def unprocessable(loc: list, msg: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": loc, "msg": msg, "type": "value_error"}])


def json_response(model, status_code: int = 200) -> Response:
    """One pydantic serialization, without FastAPI validating the returned model again."""
    return Response(model.model_dump_json(exclude_none=True), status_code=status_code, media_type="application/json")
