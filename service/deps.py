"""What the routers share: the dependencies that hand a route its engine and settings, and the JSON answers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.responses import Response

from lsr.engine import Engine
from lsr.service.settings import Settings


async def get_engine(request: Request) -> Engine:  # async: a plain def dependency costs a thread-pool hop
    return request.app.state.engine


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def unprocessable(loc: list, msg: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": loc, "msg": msg, "type": "value_error"}])


def json_response(model, status_code: int = 200) -> Response:
    """One pydantic serialization, without FastAPI validating the returned model again."""
    return Response(model.model_dump_json(exclude_none=True), status_code=status_code, media_type="application/json")
