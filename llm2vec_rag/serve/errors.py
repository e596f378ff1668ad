"""Every error as OpenAI's JSON body ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

log = logging.getLogger("llm2vec_rag.serve")

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
          404: "invalid_request_error", 405: "invalid_request_error",
          413: "invalid_request_error", 422: "invalid_request_error",
          429: "rate_limit_exceeded", 500: "server_error", 503: "server_error"}


class APIError(Exception):
    """An error answered to the client: ``param`` names the field (``input[3]``)."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": _TYPES.get(self.status, "error"),
                          "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _param(loc: tuple) -> str:
    """``('input', 'list[str]', 3)`` -> ``input[3]`` (union member tags dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("body",) or "[" in part or part in ("str", "int", "bool"):
            continue
        else:
            out += f".{part}" if out else part
    return out or "body"


def from_validation(err: ValidationError | RequestValidationError,
                    fields: list[str] | None = None) -> APIError:
    """The most specific pydantic error, as a 400 naming its field and what was given."""
    errors = err.errors()
    first = max(errors, key=lambda e: len(e.get("loc", ())))  # the deepest: input[3], not input
    param = _param(tuple(first.get("loc", ())))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        known = f" ({', '.join(fields)})" if fields else ""
        return APIError(400, f"unknown field {param!r}: this endpoint accepts only the fields "
                             f"of its schema{known}", param, "unknown_field")
    if kind == "missing":
        return APIError(400, f"missing required field {param!r}", param, "missing_field")
    given = first.get("input")
    hint = ""
    ids = isinstance(given, int) or (isinstance(given, list) and given
                                     and all(isinstance(x, int) for x in given))
    if param.startswith("input") and ids:
        hint = " (token-id input is not supported: send text)"
    shown = repr(given)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return APIError(400, f"{param}: {first.get('msg', 'invalid value')}, got {shown}{hint}",
                    param, "invalid_value")


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> JSONResponse:
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError) -> JSONResponse:
        return from_validation(err).response()

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException) -> JSONResponse:
        message = {404: f"no route {request.url.path}: see /v1/models, /v1/embeddings, "
                        f"/embed, /health, /metrics",
                   405: f"{request.method} is not allowed on {request.url.path}"}
        return APIError(err.status_code, message.get(err.status_code, str(err.detail)),
                        code="not_found" if err.status_code == 404 else None).response()

    @app.exception_handler(Exception)
    async def _internal(request: Request, err: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return APIError(500, f"internal error ({type(err).__name__}); see the server log",
                        code="internal_error").response()
