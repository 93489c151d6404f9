"""Passwords pushed by Okta: encrypted while pending, hashed once pushed, never in clear text.

A pending password is sealed with Fernet (AES-128-CBC with HMAC-SHA256: authenticated
encryption) under the key from the settings, kept in Redis only until the legacy application
confirmed it, then replaced by a salted scrypt hash used to skip pushing the same password again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class PasswordKeyError(ValueError):
    """The configured key is missing or not a Fernet key."""


class PasswordVault:
    """Seals and opens pending passwords with one key."""

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise PasswordKeyError(
                "SCIM_BRIDGE_PASSWORD_KEY must be 32 url-safe base64-encoded bytes "
                "(generate one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from exc

    @staticmethod
    def generate_key() -> bytes:
        """A new random key."""
        return Fernet.generate_key()

    def seal(self, password: str) -> str:
        """Encrypt a password for storage while it is pending."""
        return self._fernet.encrypt(password.encode()).decode()

    def open(self, token: str) -> str:
        """Decrypt a pending password; raises PasswordKeyError if the key does not match."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise PasswordKeyError("a pending password cannot be decrypted with this key") from exc


def hash_password(password: str) -> str:
    """A salted scrypt hash, to compare later passwords with the last one pushed."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def password_matches(password: str, stored: str | None) -> bool:
    """Whether ``password`` is the one ``stored`` was made from."""
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt_b64, digest_b64 = stored.split("$")
    digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), dklen=32, **_SCRYPT)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))
