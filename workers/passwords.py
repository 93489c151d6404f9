"""Passwords pushed by Okta: encrypted while pending, hashed once pushed, never in clear text.

A pending password is sealed with Fernet (AES-128-CBC with HMAC-SHA256: authenticated
encryption) under the key from the settings, kept in Redis only until the legacy application
confirmed it, then replaced by a salted scrypt hash used to skip pushing the same password again.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from scim_bridge.adapters.mapping import PasswordScheme


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


# The hash of the last password pushed, which lets a later push of the same password be skipped.
# It is made by the one password-hash helper, adapters/mapping.PasswordScheme, in libpass'
# standard scrypt format, at the cost scim-bridge always used (n = 2**14, r = 8, p = 1). The sql
# adapter hashes the same password again for the application's column: that hash is in the
# scheme the application verifies (bcrypt by default) and is stored in the application, not
# here, so one hash cannot serve both (adapters/sql/users.py says the same).
_LAST_PUSHED = PasswordScheme("scrypt", rounds=14)


def hash_password(password: str) -> str:
    """A salted scrypt hash, to compare later passwords with the last one pushed."""
    return _LAST_PUSHED.hash(password)


def password_matches(password: str, stored: str | None) -> bool:
    """Whether ``password`` is the one ``stored`` was made from."""
    if not stored:
        return False
    return _LAST_PUSHED.verify(password, _standard_format(stored))


def _standard_format(stored: str) -> str:
    """A hash recorded by earlier versions (``scrypt$salt$digest``, padded base64, the same
    scrypt parameters) in the standard format, so it still matches."""
    if not stored.startswith("scrypt$"):
        return stored
    _, salt, digest = stored.split("$")
    return f"$scrypt$ln=14,r=8,p=1${salt.rstrip('=')}${digest.rstrip('=')}"
