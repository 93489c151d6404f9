"""The correlation id of each request: the client's ``X-Request-ID`` when it is a safe one, else
a new one; bound to every line logged for the request, stored with the change it makes, sent in
the reconcile task's headers, and returned in the answer's ``X-Request-ID``."""

from __future__ import annotations

import falcon

from scim_bridge.workers import logs


class RequestIds:
    """Falcon middleware, first in the chain: a refused request carries its id too."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        request_id = logs.accepted_request_id(req.get_header(logs.HTTP_HEADER))
        req.context.request_id = request_id
        req.context.log_binding = logs.bind(request_id=request_id)
        resp.set_header(logs.HTTP_HEADER, request_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        binding = getattr(req.context, "log_binding", None)
        if binding is not None:
            logs.unbind(binding)
