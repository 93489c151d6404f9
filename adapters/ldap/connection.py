"""Bound connections to the directory: a small pool, deadlines on every operation, the port's
errors.

Every operation runs through :class:`Session`, which arms the socket with what is left of the
deadline before each request (connect, StartTLS, bind, search, add, modify, modify-DN, delete),
and asks the server for a search time limit no longer than that. A connection that failed at
the socket level is thrown away; a pooled one found dead (the directory restarted since it was
last used) is replaced once within the same call, so a restart costs no error when the
directory is back.

Result codes become the port's errors in :func:`port_error`: busy, unavailable, time limits and
lost connections are transient; everything the directory refuses on the data's or the account's
grounds is permanent, with the directory's own diagnostic message.
"""

from __future__ import annotations

import math
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from ldap3 import BASE, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.core.results import RESULT_CODES

from scim_bridge.adapters.errors import AdapterError, PermanentError, TransientError
from scim_bridge.adapters.ldap.model import DirectoryMapping
from scim_bridge.adapters.port import Deadline

T = TypeVar("T")
Info = Literal["NO_INFO", "DSA", "SCHEMA", "ALL"]

SUCCESS = 0
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49
ENTRY_ALREADY_EXISTS = 68
ATTRIBUTE_OR_VALUE_EXISTS = 20
NO_SUCH_ATTRIBUTE = 16
# The directory may accept the same request later: time limits, busy, unavailable, a server
# going down, and the client-side codes for a lost or refused connection.
TRANSIENT_CODES = frozenset({3, 11, 51, 52, 80, 81, 85, 91})
PAGED_RESULTS = "1.2.840.113556.1.4.319"


class BindRefused(TransientError):
    """The directory refused the bind DN's credentials (``invalidCredentials``).

    Transient for the reconciler (nothing is dead-lettered while the operator fixes the secret),
    and named apart so that the worker's start check and ``scim-bridge status`` can say so.
    """


def code_name(code: int) -> str:
    return str(RESULT_CODES.get(code, f"result {code}"))


def port_error(result: dict[str, Any], what: str) -> AdapterError:
    """The port's error for an LDAP result that is not success."""
    code = int(result.get("result", 80))
    message = str(result.get("message") or "").strip()
    detail = f"{what}: the directory answered {code_name(code)}"
    if message:
        detail += f" ({message})"
    if code == INVALID_CREDENTIALS:
        return BindRefused(f"{detail}: check the bind DN's password")
    if code in TRANSIENT_CODES:
        return TransientError(detail)
    return PermanentError(detail)


@dataclass
class Entry:
    """One search result: its DN and its attributes (lists of strings; bytes for binary)."""

    dn: str
    attributes: dict[str, list[Any]]

    def values(self, name: str) -> list[Any]:
        lowered = name.lower()
        for attribute, values in self.attributes.items():
            if attribute.lower() == lowered:
                return values
        return []

    def first(self, name: str) -> Any:
        values = self.values(name)
        return values[0] if values else None


class Session:
    """One bound connection used under one deadline."""

    def __init__(self, connection: Connection, deadline: Deadline, what: str) -> None:
        self.connection = connection
        self.deadline = deadline
        self.what = what

    def _arm(self) -> None:
        self.deadline.check(self.what)
        sock = self.connection.socket
        if sock is not None:
            sock.settimeout(max(0.001, self.deadline.remaining()))

    def _result(self, ok: Sequence[int] = (SUCCESS,)) -> int:
        result = self.connection.result or {}
        code = int(result.get("result", 80))
        if code not in ok:
            raise port_error(result, self.what)
        return code

    def search(
        self,
        base: str,
        search_filter: str,
        attributes: Sequence[str],
        *,
        scope: Literal["BASE", "LEVEL", "SUBTREE"] = SUBTREE,
        page_size: int | None = None,
        cookie: bytes | None = None,
        missing_ok: bool = False,
    ) -> tuple[list[Entry], bytes | None]:
        """Entries (and, when paging, the next cookie: ``None`` after the last page)."""
        self._arm()
        options: dict[str, Any] = {}
        if page_size is not None:
            options = {"paged_size": page_size, "paged_cookie": cookie}
        self.connection.search(
            base,
            search_filter,
            search_scope=scope,
            attributes=list(attributes),
            time_limit=max(1, math.ceil(self.deadline.remaining())),
            **options,
        )
        code = self._result((SUCCESS, NO_SUCH_OBJECT) if missing_ok else (SUCCESS,))
        if code == NO_SUCH_OBJECT:
            return [], None
        entries = [
            Entry(item["dn"], _attributes(item))
            for item in self.connection.response or []
            if item.get("type") == "searchResEntry"
        ]
        next_cookie: bytes | None = None
        if page_size is not None:
            control = (self.connection.result.get("controls") or {}).get(PAGED_RESULTS) or {}
            next_cookie = (control.get("value") or {}).get("cookie") or None
        return entries, next_cookie

    def read(self, dn: str, attributes: Sequence[str]) -> Entry | None:
        """The entry at ``dn``, or ``None``."""
        entries, _ = self.search(dn, "(objectClass=*)", attributes, scope=BASE, missing_ok=True)
        return entries[0] if entries else None

    def add(self, dn: str, object_classes: Sequence[str], attributes: dict[str, Any]) -> int:
        self._arm()
        self.connection.add(dn, list(object_classes), attributes)  # type: ignore[no-untyped-call]
        return self._result((SUCCESS, ENTRY_ALREADY_EXISTS))

    def modify(self, dn: str, changes: dict[str, list[tuple[str, list[Any]]]]) -> int:
        self._arm()
        self.connection.modify(dn, changes)  # type: ignore[no-untyped-call]
        return self._result((SUCCESS, NO_SUCH_OBJECT, ATTRIBUTE_OR_VALUE_EXISTS, NO_SUCH_ATTRIBUTE))

    def rename(self, dn: str, new_rdn: str) -> int:
        self._arm()
        self.connection.modify_dn(dn, new_rdn, delete_old_dn=True)
        return self._result((SUCCESS, ENTRY_ALREADY_EXISTS))

    def delete(self, dn: str) -> None:
        self._arm()
        self.connection.delete(dn)  # type: ignore[no-untyped-call]
        self._result((SUCCESS, NO_SUCH_OBJECT))


def _attributes(item: dict[str, Any]) -> dict[str, list[Any]]:
    # Without the schema ldap3 decodes every value as UTF-8 where it can; binary values (an
    # objectGUID) stay bytes, taken from the raw attributes.
    decoded: dict[str, list[Any]] = {}
    raw = item.get("raw_attributes") or {}
    for name, values in (item.get("attributes") or {}).items():
        listed = values if isinstance(values, list) else [values]
        if any(isinstance(v, bytes) for v in listed):
            listed = list(raw.get(name, listed))
        decoded[name] = listed
    return decoded


class Directory:
    """Connections to one directory: opened and bound on demand, pooled when idle."""

    def __init__(
        self,
        settings: DirectoryMapping,
        *,
        connect_timeout_s: float = 5.0,
        pool_size: int = 8,
    ) -> None:
        self.settings = settings
        self.connect_timeout_s = connect_timeout_s
        self.pool_size = pool_size
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        parts = urlsplit(settings.url)
        self._host = parts.hostname or "localhost"
        self._ssl = parts.scheme.lower() == "ldaps"
        self._port = parts.port or (636 if self._ssl else 389)

    def _tls(self) -> Tls | None:
        if not (self._ssl or self.settings.start_tls):
            return None
        ca = str(self.settings.ca_file) if self.settings.ca_file else None
        return Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca, version=ssl.PROTOCOL_TLS_CLIENT)

    def server(self, deadline: Deadline, *, get_info: Info = NONE) -> Server:
        connect_s = max(0.001, min(self.connect_timeout_s, deadline.remaining()))
        return Server(
            self._host,
            port=self._port,
            use_ssl=self._ssl,
            tls=self._tls(),
            connect_timeout=connect_s,
            get_info=get_info,
        )

    def open(self, deadline: Deadline, what: str, *, get_info: Info = NONE) -> Connection:
        """A new connection, StartTLS'd if configured and bound, within ``deadline``."""
        deadline.check(what)
        connection = Connection(
            self.server(deadline, get_info=get_info),
            user=self.settings.bind_dn,
            password=self.settings.password(),
            # ldap3 also sets SO_RCVTIMEO from this, which wants whole seconds; each request
            # re-arms the socket with the deadline's remainder (Session._arm).
            receive_timeout=max(1, math.ceil(deadline.remaining())),
            raise_exceptions=False,
            return_empty_attributes=False,
        )
        try:
            connection.open()
            session = Session(connection, deadline, what)
            if self.settings.start_tls:
                session._arm()
                if not connection.start_tls():
                    raise port_error(connection.result or {}, f"{what}: StartTLS")
            session._arm()
            if not connection.bind():
                raise port_error(
                    connection.result or {}, f"{what}: bind as {self.settings.bind_dn}"
                )
        except LDAPException as exc:
            close(connection)
            raise TransientError(
                f"{what}: cannot reach the directory at {self.settings.url}: {_reason(exc)}"
            ) from None
        except BaseException:
            close(connection)
            raise
        return connection

    @contextmanager
    def session(self, deadline: Deadline, what: str) -> Iterator[Session]:
        """A bound connection from the pool (or a new one) for one call."""
        connection = self.take(deadline, what)
        try:
            yield Session(connection, deadline, what)
        except BaseException:
            close(connection)
            raise
        else:
            self.give_back(connection)

    def run(self, deadline: Deadline, what: str, call: Callable[[Session], T]) -> T:
        """``call`` on a bound connection; a pooled connection that turns out dead (the
        directory restarted) is replaced once, then socket failures are transient."""
        deadline.check(what)
        with self._lock:
            pooled = self._idle.pop() if self._idle else None
        if pooled is not None:
            try:
                result = call(Session(pooled, deadline, what))
            except LDAPException as exc:
                close(pooled)
                if _timed_out(exc):
                    raise TransientError(f"{what}: the directory did not answer in time") from None
                # Otherwise the server had closed it while idle (a restart): open a new one.
            except AdapterError:
                self.give_back(pooled)
                raise
            except BaseException:
                close(pooled)
                raise
            else:
                self.give_back(pooled)
                return result
        connection = self.open(deadline, what)
        try:
            result = call(Session(connection, deadline, what))
        except LDAPException as exc:
            close(connection)
            raise TransientError(
                f"{what}: the connection to the directory failed: {_reason(exc)}"
            ) from None
        except AdapterError:
            self.give_back(connection)
            raise
        except BaseException:
            close(connection)
            raise
        self.give_back(connection)
        return result

    def take(self, deadline: Deadline, what: str) -> Connection:
        """A fresh bound connection (listings hold theirs across calls)."""
        return self.open(deadline, what)

    def give_back(self, connection: Connection) -> None:
        if connection.closed or not connection.bound:
            close(connection)
            return
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(connection)
                return
        close(connection)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            close(connection)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _timed_out(exc: BaseException) -> bool:
    return "timed out" in str(exc).lower()


def close(connection: Connection) -> None:
    """Unbind, ignoring a connection that is gone already."""
    with suppress(LDAPException, OSError):
        connection.unbind()
