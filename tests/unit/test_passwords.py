"""The hash of the last password pushed (workers/passwords.py), made by the one password-hash
helper (adapters/mapping.PasswordScheme)."""

from __future__ import annotations

import base64
import hashlib

from scim_bridge.adapters.mapping import PasswordScheme
from scim_bridge.workers.passwords import hash_password, password_matches


def test_the_last_pushed_hash_is_standard_scrypt_salted_and_never_the_password() -> None:
    first, second = hash_password("s3cret!"), hash_password("s3cret!")
    assert first.startswith("$scrypt$ln=14,r=8,p=1$") and first != second
    assert "s3cret!" not in first
    assert password_matches("s3cret!", first) and not password_matches("other", first)
    assert PasswordScheme("scrypt").verify("s3cret!", first)


def test_a_hash_recorded_by_earlier_versions_still_matches() -> None:
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(b"s3cret!", salt=salt, n=2**14, r=8, p=1, dklen=32)
    earlier = f"scrypt${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert password_matches("s3cret!", earlier)
    assert not password_matches("other", earlier)


def test_no_hash_or_a_malformed_one_never_matches() -> None:
    assert not password_matches("s3cret!", None)
    assert not password_matches("s3cret!", "")
    assert not password_matches("s3cret!", "$scrypt$garbage")
