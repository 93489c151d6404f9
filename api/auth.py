"""Authentication of the Okta agent: HTTP Basic, one HTTP header, or none (explicitly)."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

import falcon

from scim_bridge.api.errors import ScimError
from scim_bridge.workers.settings import Settings

log = logging.getLogger("scim_bridge.api.auth")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class Authenticator:
    """Falcon middleware checking every SCIM request's credentials in constant time."""

    def __init__(self, settings: Settings) -> None:
        self.mode = settings.auth_mode
        self.header_name = settings.auth_header_name
        secret = settings.auth_header_value or settings.auth_password
        self._expected = b""
        if self.mode == "basic" and settings.auth_username and settings.auth_password:
            pair = f"{settings.auth_username}:{settings.auth_password.get_secret_value()}"
            self._expected = pair.encode()
        elif self.mode == "header" and secret is not None:
            self._expected = secret.get_secret_value().encode()
        if self.mode == "none":
            log.warning(
                "authentication is off (SCIM_BRIDGE_AUTH_MODE=none): "
                "anyone who reaches this port can provision users"
            )

    def challenge(self) -> str:
        """The WWW-Authenticate value of a 401."""
        if self.mode == "basic":
            return 'Basic realm="scim-bridge", charset="UTF-8"'
        scheme = "Bearer"
        return f'{scheme} realm="scim-bridge"'

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.mode == "none" or req.path in OPEN_PATHS:
            return
        if not self._accepts(req):
            raise ScimError(
                401,
                "missing or wrong credentials for the SCIM connector",
                WWW_Authenticate=self.challenge(),
            )

    def _accepts(self, req: falcon.Request) -> bool:
        if self.mode == "basic":
            header = req.get_header("Authorization") or ""
            scheme, _, encoded = header.partition(" ")
            if scheme.lower() != "basic":
                return False
            try:
                given = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(given, self._expected)
        given_header = (req.get_header(self.header_name) or "").encode()
        return hmac.compare_digest(given_header, self._expected)
