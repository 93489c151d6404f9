"""Each request's own deadline: work that cannot finish in time is abandoned before it is stored.

Okta gives up on a request after its timeout and may send it again; a write that is stored
after that would be applied twice, or minutes late. :class:`RequestDeadline` (a Falcon
middleware) starts the clock of every request at ``request_deadline_s``; the write path calls
:func:`check_before_storing` just before the one atomic store step, and waits for the legacy
application's answer no longer than what is left (:func:`remaining`).
"""

from __future__ import annotations

import contextvars
from typing import Any

import falcon

from scim_bridge.adapters.port import Deadline
from scim_bridge.api.errors import ScimError

_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "scim_bridge_request_deadline", default=None
)


class RequestDeadline:
    """Falcon middleware: the request's deadline, for the code that serves it."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.deadline_token = _current.set(Deadline.after(self.deadline_s))

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        token = getattr(req.context, "deadline_token", None)
        if token is not None:
            _current.reset(token)


def remaining(at_most: float) -> float:
    """``at_most`` seconds, or what is left of the request's deadline if that is less."""
    deadline = _current.get()
    return at_most if deadline is None else min(at_most, deadline.remaining())


def check_before_storing(what: str) -> None:
    """503 (nothing stored) when the request's deadline has passed."""
    deadline = _current.get()
    if deadline is not None and deadline.expired():
        raise ScimError(
            503,
            f"{what} was abandoned: the request's deadline (SCIM_BRIDGE_REQUEST_DEADLINE_S) "
            "passed before it could be stored; nothing was changed, send it again",
            Retry_After="1",
        )
