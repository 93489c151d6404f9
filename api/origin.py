"""Where the connector's own URLs start: the configured public URL, or a Host that is allowed.

A Host header is the client's word; copied into ``Location`` and ``meta.location`` unchecked, it
lets anyone who can reach the connector plant URLs in what Okta stores. So the origin is the
configured ``public_base_url`` when there is one, and otherwise the request's own only when its
host is in ``allowed_hosts``.
"""

from __future__ import annotations

from collections.abc import Iterable

import falcon

from scim_bridge.api.errors import ScimError


class Origin:
    """Computes the scheme://host[:port] (plus any path prefix) of the connector's URLs."""

    def __init__(self, public_base_url: str | None, allowed_hosts: Iterable[str]) -> None:
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.allowed_hosts = frozenset(host.lower().strip("[]") for host in allowed_hosts)

    def of(self, req: falcon.Request) -> str:
        """The origin for ``req``; 400 when its Host is not one the connector may name."""
        if self.public_base_url is not None:
            return self.public_base_url
        host = (req.host or "").lower().strip("[]")
        if host not in self.allowed_hosts and "*" not in self.allowed_hosts:
            raise ScimError(
                400,
                f"Host {_printable(host)} is not one of this connector's names: set "
                "SCIM_BRIDGE_PUBLIC_BASE_URL to the URL Okta uses, or add the host to "
                "SCIM_BRIDGE_ALLOWED_HOSTS",
                "invalidValue",
            )
        return str(req.prefix)


def _printable(host: str) -> str:
    return repr(host.encode("ascii", "backslashreplace").decode()[:100])
