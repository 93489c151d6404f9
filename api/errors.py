"""Errors are types, raised where detected and rendered once, in the dialect of the request.

scim2-models' :class:`~scim2_models.SCIMException` hierarchy is the error type of the whole api
(it carries ``status`` and ``scimType``); Falcon's own errors (unknown route, wrong method) are
turned into it, so every error body follows RFC 7644 §3.12 (SCIM 2.0) or the SCIM 1.1 shapes
the Okta agent's SDK reads.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon
from pydantic import ValidationError
from scim2_models import Error, SCIMException

log = logging.getLogger("scim_bridge.api")

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(SCIMException):
    """An error with an explicit status and scimType (for cases scim2-models has no class for)."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None, **headers: str):
        super().__init__(detail=detail)
        self.status = status
        self.scim_type = scim_type or ""
        self.headers = headers


# What a value must be, by pydantic error type: the client reads SCIM words, not Python's.
_MUST_BE = {
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "dict_type": "an object",
    "list_type": "a list",
    "datetime_type": "a date-time (RFC 3339)",
    "datetime_parsing": "a date-time (RFC 3339)",
    "datetime_from_date_parsing": "a date-time (RFC 3339)",
}


def _scim_name(part: str) -> str:
    # Assignments during PATCH report Python field names (given_name): name them as SCIM does.
    if part.lower().startswith("urn:"):
        return part
    head, *rest = part.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def validation_detail(exc: ValidationError) -> tuple[str, str]:
    """The first problem of a pydantic validation error in SCIM terms: (detail, scimType).

    Never pydantic's own rendering (model class names, ``input_value``, ``type=``, links).
    """
    first = exc.errors(include_url=False, include_input=False)[0]
    error = Error.from_validation_errors([first])[0]
    scim_type = error.scim_type or "invalidValue"
    if first["type"].startswith("scim_"):
        return str(error.detail), scim_type  # written by scim2-models for SCIM clients
    # scim2-models writes the location as a SCIM attribute path after the (empty) message.
    loc = tuple(part if isinstance(part, int) else _scim_name(part) for part in first["loc"])
    located = Error.from_validation_error({"type": first["type"], "msg": "", "loc": loc})
    path = str(located.detail or "").removeprefix(": ")
    if first["type"] in _MUST_BE:
        message = f"must be {_MUST_BE[first['type']]}"
    elif first["type"] == "missing":
        message = "is required"
    elif first["type"] == "extra_forbidden":
        message = "is not an attribute of the schema"
    else:
        message = str(first["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return (f"{path} {message}" if path else message), scim_type


def from_validation(exc: ValidationError, what: str) -> SCIMException:
    """The first problem of a pydantic validation error, as a SCIM error naming ``what``."""
    detail, scim_type = validation_detail(exc)
    return ScimError(400, f"{what}: {detail}", scim_type)


def error_body(status: int, detail: str, scim_type: str | None, dialect: str) -> bytes:
    """The error document for ``dialect`` (``"2.0"`` or ``"1.1"``)."""
    if dialect == "1.1":
        internal = {401: "E0000011", 404: "E0000007", 409: "E0000001", 400: "E0000001"}
        body: dict[str, Any] = {
            "Errors": [{"code": status, "description": detail}],
            "errors": [
                {
                    "statusCode": status,
                    "internalCode": internal.get(status, "E0000009"),
                    "description": detail,
                }
            ],
        }
    else:
        body = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
        if scim_type:
            body["scimType"] = scim_type
    return json.dumps(body).encode()


def dialect_of(req: falcon.Request) -> str:
    """Which SCIM dialect a request speaks, from its path."""
    return "2.0" if req.path.startswith("/scim/v2") else "1.1"


def _render(
    resp: falcon.Response, req: falcon.Request, status: int, detail: str, scim_type: str | None
) -> None:
    resp.status = status
    resp.content_type = "application/scim+json"
    resp.data = error_body(status, detail, scim_type, dialect_of(req))


def handle_scim_exception(
    req: falcon.Request, resp: falcon.Response, exc: SCIMException, params: dict[str, Any]
) -> None:
    """Falcon error handler for every SCIM error."""
    detail, scim_type = exc.detail, exc.scim_type or None
    if isinstance(exc.__cause__, ValidationError):
        # scim2-models wraps a failed assignment (during PATCH) with pydantic's text as detail.
        detail, cause_type = validation_detail(exc.__cause__)
        scim_type = scim_type or cause_type
    _render(resp, req, exc.status, detail, scim_type)
    for name, value in getattr(exc, "headers", {}).items():
        resp.set_header(name.replace("_", "-"), value)


def handle_http_error(
    req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError, params: dict[str, Any]
) -> None:
    """Falcon's own errors (404 route, 405 method, 415 media) in the SCIM error schema."""
    detail = exc.description or exc.title or "error"
    if exc.status_code == 405:
        detail = f"{req.method} is not supported on {req.path}"
    elif exc.status_code == 404 and not exc.description:
        detail = f"{req.path} is not a SCIM endpoint"
    _render(resp, req, exc.status_code, detail, None)
    for name, value in dict(exc.headers or {}).items():
        resp.set_header(name, value)


def handle_unexpected(
    req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict[str, Any]
) -> None:
    """A bug or an outage: log it, answer 500 (or 503 for Redis trouble) in the SCIM schema."""
    import redis

    if isinstance(exc, redis.RedisError):
        log.error("Redis unavailable during %s %s: %s", req.method, req.path, exc)
        _render(resp, req, 503, "the connector's store is unavailable; retry shortly", None)
        resp.set_header("Retry-After", "5")
        return
    log.exception("unexpected error during %s %s", req.method, req.path)
    _render(resp, req, 500, "internal error in the connector; see its log", None)


def install(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Register the handlers, most generic first (Falcon picks the most specific)."""
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(SCIMException, handle_scim_exception)
