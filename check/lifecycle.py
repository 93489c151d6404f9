"""The lifecycle the check replays, in the order the Okta Provisioning Agent sends it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from scim_bridge.check.protocol import PushedUser, StepFailed, StepSkipped, near_miss
from scim_bridge.check.runner import (
    CAPABILITIES,
    Steps,
    id_in,
    member_ids,
    server_clock,
    short_id,
    utc_seconds,
)
from scim_bridge.check.strict_v1 import V1_PROVIDER_CONFIG


class Checker(Steps):
    """The agent's requests, step by step, each reported as PASS, FAIL or SKIP."""

    # Running -------------------------------------------------------------------------------------
    def run(self) -> int:
        """Every step, then the cleanup (also after a failure or Ctrl-C); 0 when none failed."""
        steps: list[tuple[str, Callable[[], str]]] = [
            ("capabilities", self.check_capabilities),
            ("check exists", self.check_exists),
            ("create user", self.create_user),
            ("create pending user", self.create_pending_user),
            ("full import", self.full_import),
            ("incremental import", self.incremental_import),
            ("get by id", self.get_by_id),
            ("profile push", self.profile_push),
            ("password push", self.password_push),
            ("deactivate", self.deactivate),
            ("reactivate", self.reactivate),
            ("duplicate create", self.duplicate_create),
            ("groups", self.group_lifecycle),
            ("bad credentials", self.bad_credentials),
        ]
        print(
            f"scim-bridge check of {self.connector.base_url} (SCIM {self.scim.version})",
            file=self.out,
        )
        try:
            for name, step in steps:
                self.step(name, step)
        finally:
            self.step("cleanup", self.cleanup)
            self.connector.close()
        print(
            f"{self.counts['PASS']} passed, {self.counts['FAIL']} failed, "
            f"{self.counts['SKIP']} skipped",
            file=self.out,
        )
        return 1 if self.counts["FAIL"] else 0

    def check_capabilities(self) -> str:
        """``GET /ServiceProviderConfigs``, where Okta's capabilities are, in both SCIM versions."""
        answer = self.connector.send("GET", self.scim.config_path)
        self.expect(answer, 200)
        media = answer.headers.get("content-type", "").split(";")[0].strip()
        if media not in ("application/json", "application/scim+json"):
            raise StepFailed(f"{answer.request} answered Content-Type {media!r}, not JSON")
        config = answer.document()
        schemes = config.get("authenticationSchemes")
        if not isinstance(schemes, list) or not schemes:
            raise StepFailed("authenticationSchemes is missing or empty")
        for scheme in schemes:
            if not isinstance(scheme, dict) or not scheme.get("type"):
                raise StepFailed(f"an authentication scheme has no type: {scheme!r}")
            if not scheme.get("description"):
                raise StepFailed(f"authentication scheme {scheme['type']!r} has no description")
        okta = config.get(V1_PROVIDER_CONFIG)
        if okta is None and self.scim.version == "2.0":
            return f"{answer.timing}; no {V1_PROVIDER_CONFIG}: all capabilities assumed"
        if not isinstance(okta, dict) or not isinstance(
            okta.get("userManagementCapabilities"), list
        ):
            raise StepFailed(f"no {V1_PROVIDER_CONFIG} with userManagementCapabilities")
        advertised = {str(name) for name in okta["userManagementCapabilities"]}
        unknown = sorted(advertised - CAPABILITIES)
        self.capabilities = frozenset(advertised & CAPABILITIES)
        if unknown:
            raise StepFailed(f"unknown userManagementCapabilities: {', '.join(unknown)}")
        shown = ", ".join(sorted(self.capabilities)) or "none"
        return f"{answer.timing}; capabilities: {shown}"

    def check_exists(self) -> str:
        """The agent's check before every create, for a userName nobody has."""
        answer, listing = self.find(self.first.user_name)
        if listing["totalResults"] != 0:
            raise StepFailed(
                f"totalResults {listing['totalResults']} for a fresh {self.first.user_name}"
            )
        server_now = server_clock(answer) or datetime.now(UTC)
        # Okta's clock decides in real life; the connector's avoids a false failure from skew.
        self.since = utc_seconds(server_now - timedelta(seconds=1))
        return f"{answer.timing}, totalResults 0"

    def create_user(self) -> str:
        """Push a new active user with a password, then find it by its upper-cased userName."""
        self.need("PUSH_NEW_USERS")
        if not self.since:
            self.since = utc_seconds(datetime.now(UTC) - timedelta(seconds=1))
        answer, _ = self.create(self.first)
        value = self.first.user_name
        if self.unique_field == "userName":
            value = value.upper()
        _, listing = self.find(value)
        ids = [r.get("id") for r in listing.get("Resources") or []]
        if self.first.id not in ids:
            raise StepFailed(f"check-exists for {value!r} does not find id {self.first.id}")
        return f"{answer.timing}, id {short_id(self.first.id)}; found as {value}"

    def create_pending_user(self) -> str:
        """Check that it does not exist, then push a new user with ``active: false``."""
        self.need("PUSH_PENDING_USERS")
        if not self.since:
            self.since = utc_seconds(datetime.now(UTC) - timedelta(seconds=1))
        _, listing = self.find(self.pending.user_name)
        if listing["totalResults"] != 0:
            raise StepFailed(f"totalResults {listing['totalResults']} for a fresh user")
        answer, document = self.create(self.pending)
        if document.get("active") is not False:
            raise StepFailed(f"{answer.request} answered active {document.get('active')!r}")
        return f"{answer.timing}, id {short_id(self.pending.id)}, active false"

    def full_import(self) -> str:
        """Every page of ``/Users``, 100 at a time; both created users among them."""
        self.need("IMPORT_NEW_USERS")
        started = time.perf_counter()
        found, pages = self.import_all("Users", "User")
        self.must_contain(found, "full import")
        elapsed = time.perf_counter() - started
        return f"{len(found)} users in {pages} page(s), {elapsed:.2f} s"

    def incremental_import(self) -> str:
        """``meta.lastModified gt`` the instant before the creates finds both users."""
        self.need("IMPORT_NEW_USERS")
        if not self.since:
            raise StepSkipped("no user was created")
        condition = quote(f'meta.lastModified gt "{self.since}"', safe="")
        found, _ = self.import_all("Users", "User", f"filter={condition}&")
        self.must_contain(found, "incremental import")
        return f"{len(found)} users changed after {self.since}"

    def must_contain(self, found: Mapping[str, Any], what: str) -> None:
        """Fail when a created user is missing from an import."""
        created = [u for u in (self.first, self.pending) if u.id]
        if not created:
            raise StepSkipped("no user was created")
        missing = [f"{u.user_name} ({u.id})" for u in created if u.id not in found]
        if missing:
            raise StepFailed(f"{what} lacks {', '.join(missing)}")

    def get_by_id(self) -> str:
        """``GET /Users/{id}`` answers the user; an unknown id answers 404."""
        self.need("IMPORT_PROFILE_UPDATES")
        self.need_user(self.first)
        answer, document = self.get_user(self.first)
        if str(document.get("userName", "")).lower() != self.first.user_name.lower():
            raise StepFailed(f"{answer.request} answered userName {document.get('userName')!r}")
        unknown = self.connector.send("GET", f"Users/scim-bridge-check-{secrets.token_hex(8)}")
        self.error(unknown, 404)
        return f"{answer.timing}; unknown id 404"

    def profile_push(self) -> str:
        """A whole-user PUT with a new givenName; a GET shows it."""
        self.need("PUSH_PROFILE_UPDATES")
        self.need_user(self.first)
        self.first.given_name = f"Changed-{secrets.token_hex(3)}"
        answer, _ = self.put_user(self.first)
        shown = (self.get_user(self.first)[1].get("name") or {}).get("givenName")
        if shown != self.first.given_name:
            raise StepFailed(f"GET shows givenName {shown!r}, not {self.first.given_name!r}")
        return f"{answer.timing}; givenName {self.first.given_name} visible"

    def password_push(self) -> str:
        """A whole-user PUT with a new password."""
        self.need("PUSH_PASSWORD_UPDATES")
        self.need_user(self.first)
        answer, _ = self.put_user(self.first, secrets.token_urlsafe(12))
        return f"{answer.timing}, no password in the answer"

    def deactivate(self) -> str:
        """A whole-user PUT with ``active: false``; a GET shows it."""
        self.need("PUSH_USER_DEACTIVATION")
        self.need_user(self.first)
        self.first.active = False
        answer, _ = self.put_user(self.first)
        shown = self.get_user(self.first)[1].get("active")
        if shown is not False:
            raise StepFailed(f"GET shows active {shown!r} after the deactivation")
        return f"{answer.timing}; GET shows active false"

    def reactivate(self) -> str:
        """A whole-user PUT with ``active: true``: the agent reads ``active`` from the answer."""
        self.need("REACTIVATE_USERS")
        self.need_user(self.first)
        self.first.active = True
        answer, document = self.put_user(self.first)
        if document.get("active") is not True:
            raise StepFailed(f"{answer.request} answered active {document.get('active')!r}")
        return f"{answer.timing}, active true in the answer"

    def duplicate_create(self) -> str:
        """A second push of the first user's userName is a 409."""
        self.need("PUSH_NEW_USERS")
        self.need_user(self.first)
        again = PushedUser(self.first.user_name, self.first.given_name, True)
        body = self.scim.user_body(again, secrets.token_urlsafe(12))
        answer = self.connector.send("POST", "Users", body)
        if 200 <= answer.status < 300:
            rid = id_in(answer)
            if rid:
                self.pushed.append(PushedUser(again.user_name, again.given_name, True, rid))
            raise StepFailed(f"{answer.request} answered {answer.status}, expected 409")
        self.error(answer, 409)
        return f"{answer.timing}"

    def group_lifecycle(self) -> str:
        """Push, duplicate, import, replace, read and delete a group, as the agent does."""
        self.need("GROUP_PUSH")
        self.need_user(self.first)
        body = self.scim.group_body(self.group_name, [self.first], f"okta-{secrets.token_hex(6)}")
        created = self.connector.send("POST", "Groups", body)
        self.expect(created)
        gid = id_in(created)
        if gid:  # deleted by the cleanup unless this step gets to delete it
            self.groups.append(gid)
        group = self.resource(created, "Group")
        if not gid:
            raise StepFailed(f"{created.request} answered a group without an id")
        if self.first.id not in member_ids(group):
            raise StepFailed(f"{created.request} answered members {group.get('members')!r}")

        duplicate = self.connector.send("POST", "Groups", body)
        second = id_in(duplicate) if 200 <= duplicate.status < 300 else None
        if second:
            self.groups.append(second)
        self.error(duplicate, 409)

        imported = self.import_all("Groups", "Group")[0].get(gid)
        if imported is None:
            raise StepFailed(f"the import of /Groups lacks group {gid}")
        if self.first.id not in member_ids(imported):
            raise StepFailed(f"the imported group {gid} lacks its member inline")

        renamed = f"{self.group_name} renamed"
        newcomer = self.pending if self.pending.id else self.first
        replaced = self.connector.send(
            "PUT", f"Groups/{gid}", self.scim.group_body(renamed, [newcomer], gid)
        )
        self.expect(replaced)
        self.resource(replaced, "Group")
        fetched = self.connector.send("GET", f"Groups/{gid}")
        self.expect(fetched, 200)
        shown = self.resource(fetched, "Group")
        if shown.get("displayName") != renamed or member_ids(shown) != {newcomer.id}:
            raise StepFailed(
                f"GET after the PUT shows {shown.get('displayName')!r} with members "
                f"{sorted(member_ids(shown))}, not {renamed!r} with [{newcomer.id}]"
            )

        deleted = self.connector.send("DELETE", f"Groups/{gid}")
        self.expect(deleted)
        self.groups.remove(gid)
        gone = self.connector.send("GET", f"Groups/{gid}")
        self.error(gone, 404)
        return (
            f"push {created.status}, duplicate 409, import, replace {replaced.status}, "
            f"delete {deleted.status}, then 404"
        )

    def bad_credentials(self) -> str:
        """Wrong and missing credentials are both a 401."""
        if not self.connector.credentials:
            raise StepSkipped("no credentials given (--basic or --header)")
        target = "Users?startIndex=1&count=1"
        wrong = self.connector.send(
            "GET", target, credentials=near_miss(self.connector.credentials)
        )
        self.error(wrong, 401)
        missing = self.connector.send("GET", target, credentials={})
        self.error(missing, 401)
        return f"wrong {wrong.status}, missing {missing.status}"

    def cleanup(self) -> str:
        """Deactivate every user the check created (Okta never deletes them), delete its groups."""
        done: list[str] = []
        problems: list[str] = []
        for gid in list(self.groups):
            answer = self.connector.send("DELETE", f"Groups/{gid}")
            if 200 <= answer.status < 300 or answer.status == 404:
                self.groups.remove(gid)
                done.append(f"group {short_id(gid)} deleted")
            else:
                problems.append(f"DELETE Groups/{gid} answered {answer.status}")
        if self.pushed and "PUSH_USER_DEACTIVATION" not in self.capabilities:
            left = ", ".join(u.user_name for u in self.pushed)
            raise StepSkipped(f"PUSH_USER_DEACTIVATION not advertised; left active: {left}")
        for user in self.pushed:
            user.active = False
            answer = self.connector.send("PUT", f"Users/{user.id}", self.scim.user_body(user, None))
            if 200 <= answer.status < 300:
                done.append(f"{user.user_name} deactivated")
            else:
                problems.append(f"PUT Users/{user.id} active false answered {answer.status}")
        if problems:
            raise StepFailed("; ".join(problems))
        return "; ".join(done) or "nothing to clean up"
