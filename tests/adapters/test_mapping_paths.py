"""The storage-neutral mapping pieces: attribute paths, the active pair, password schemes."""

from __future__ import annotations

from typing import Any

import pytest

from scim_bridge.adapters.mapping import (
    ActiveMapping,
    MappingError,
    PasswordScheme,
    parse_path,
)

EXT = "urn:okta:onprem_app:1.0:user:custom"


def test_paths_read_every_supported_form() -> None:
    user: dict[str, Any] = {
        "userName": "ada",
        "Name": {"givenName": "Ada"},
        "emails": [
            {"value": "home@example.org", "type": "home"},
            {"value": "ada@example.com", "type": "work", "primary": True},
        ],
        EXT: {"departmentName": "Engines"},
    }
    assert parse_path("userName").get(user) == "ada"
    assert parse_path("name.givenName").get(user) == "Ada"  # names ignore case
    assert parse_path('emails[type eq "work"].value').get(user) == "ada@example.com"
    assert parse_path("emails[primary eq true].value").get(user) == "ada@example.com"
    assert parse_path(f"{EXT}:departmentName").get(user) == "Engines"
    assert parse_path("name.familyName").get(user) is None
    assert parse_path('emails[type eq "other"].value').get(user) is None


def test_primary_falls_back_to_the_first_entry() -> None:
    user = {"emails": [{"value": "a@example.com"}]}
    assert parse_path("emails[primary eq true].value").get(user) == "a@example.com"


def test_paths_write_and_remove() -> None:
    user: dict[str, Any] = {"userName": "ada", "name": {"givenName": "Ada"}}
    parse_path("name.familyName").set(user, "Lovelace")
    parse_path('emails[type eq "work"].value').set(user, "ada@example.com")
    parse_path(f"{EXT}:departmentName").set(user, "Engines")
    assert user == {
        "userName": "ada",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"type": "work", "value": "ada@example.com"}],
        EXT: {"departmentName": "Engines"},
    }
    parse_path('emails[type eq "work"].value').set(user, None)
    parse_path("name.givenName").set(user, None)
    assert "emails" not in user
    assert user["name"] == {"familyName": "Lovelace"}


def test_writing_keeps_other_entries_and_the_documents_spelling() -> None:
    user: dict[str, Any] = {"Emails": [{"value": "h@example.org", "type": "home"}]}
    parse_path('emails[type eq "work"].value').set(user, "w@example.com")
    assert user["Emails"] == [
        {"value": "h@example.org", "type": "home"},
        {"type": "work", "value": "w@example.com"},
    ]


@pytest.mark.parametrize("text", ["", "name..x", 'emails[type ne "x"].value', "urn:x", "1abc"])
def test_a_malformed_path_names_the_key(text: str) -> None:
    with pytest.raises(MappingError) as raised:
        parse_path(text, key="users.columns")
    assert str(raised.value).startswith("users.columns: ")


def test_active_pairs_convert_both_ways() -> None:
    letters = ActiveMapping("A", "T")
    assert letters.to_stored(True) == "A" and letters.to_stored(False) == "T"
    assert letters.from_stored("A") is True and letters.from_stored("A ") is True
    assert letters.from_stored("S") is False  # a third state never reads as active
    assert ActiveMapping(1, 0).from_stored(1) is True
    assert ActiveMapping(True, False).from_stored(0) is False
    with pytest.raises(MappingError):
        ActiveMapping("Y", "Y")


@pytest.mark.parametrize(
    ("scheme", "prefix"),
    [
        ("bcrypt", "$2b$"),
        ("argon2", "$argon2id$"),
        ("pbkdf2_sha256", "$pbkdf2-sha256$"),
        ("sha512_crypt", "$6$"),
    ],
)
def test_password_schemes_hash_in_their_standard_format(scheme: str, prefix: str) -> None:
    hashed = PasswordScheme(scheme).hash("s3cret-Horse")
    assert hashed.startswith(prefix)
    assert PasswordScheme(scheme).verify("s3cret-Horse", hashed)
    assert not PasswordScheme(scheme).verify("wrong", hashed)
    assert not PasswordScheme(scheme).verify("s3cret-Horse", "garbage")


def test_an_unknown_scheme_is_named() -> None:
    with pytest.raises(MappingError, match=r"password\.scheme: unknown scheme 'md5'"):
        PasswordScheme("md5")
