"""Logs: one JSON object per line (or escaped text), and the correlation id of each change.

Every line of the api, the workers and beat, gunicorn's and Celery's own lines included, goes
through one handler with one formatter (:func:`logging_config`): ``json`` writes one object per
line with ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, ``process``, the context
(``request_id``, ``resource``) when known and the record's extras; ``text`` writes one line per
record with control characters escaped, so no value (a request path with a newline in it) can
forge a line. Which one: ``SCIM_BRIDGE_LOG_FORMAT`` when set, else :func:`log_format`'s rule.

The correlation id is the request's ``X-Request-ID`` when it is a safe one
(:func:`accepted_request_id`), else a new one. The api binds it for the request
(:func:`bound`), returns it in the response, stores it with the change and sends it in the
reconcile task's headers (:data:`REQUEST_ID_HEADER`); the worker binds it for the task (Celery's
``task_prerun``/``task_postrun``), so every line written for the change carries it, Celery's
own "received" and "succeeded" lines too (:func:`task_received`).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import logging.config
import re
import sys
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any, Literal

LogFormat = Literal["json", "text"]

REQUEST_ID_HEADER = "request_id"
"""The reconcile task's message header carrying the correlation id."""
HTTP_HEADER = "X-Request-ID"

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_NOTHING_BOUND: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar(
    "scim_bridge_log_context", default=_NOTHING_BOUND
)


def accepted_request_id(offered: str | None) -> str:
    """The client's id when it is short and made of safe characters, else a new one."""
    if offered and _SAFE_REQUEST_ID.match(offered):
        return offered
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The correlation id of the request or task this thread is working for, if any."""
    return _context.get().get("request_id")


def bind(**fields: str | None) -> Token[Mapping[str, str]]:
    """Add ``fields`` (those not None) to every line this context logs, until :func:`unbind`."""
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})


def unbind(token: Token[Mapping[str, str]]) -> None:
    """Back to the context before the :func:`bind` that returned ``token``."""
    _context.reset(token)


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` (those not None) to every line logged inside the block."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record (a handler filter: it sees every line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = dict(_context.get())
        if "request_id" not in context:
            # The worker's main process logs "Task ... received" outside any task.
            data = getattr(record, "data", None)
            task_id = data.get("id") if isinstance(data, dict) else None
            found = _received.get(task_id) if isinstance(task_id, str) else None
            if found:
                context["request_id"] = found
        for name, value in context.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class _Received:
    """Task id -> correlation id of the last tasks this process received (bounded)."""

    def __init__(self, size: int = 10_000) -> None:
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._size = size

    def remember(self, task_id: str, request_id: str) -> None:
        self._ids[task_id] = request_id
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)

    def get(self, task_id: str) -> str | None:
        return self._ids.get(task_id)


_received = _Received()


def task_received(task_id: str, request_id: str) -> None:
    """Remember the correlation id of a task this process received (``workers/tasks.py``'s
    request class calls it before Celery logs the task's arrival)."""
    _received.remember(task_id, request_id)


class QuietTasks(logging.Filter):
    """Celery's bookkeeping lines about the periodic tasks ("Sending due task", "received",
    "succeeded") at DEBUG: every 5 s they would bury everything else. The tasks log what they
    did themselves when they did something."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        super().__init__()
        self.names = frozenset(names)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and self._about_periodic(record):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            # The logger's level was checked before this filter: check the demoted line again.
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True

    def _about_periodic(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            return data.get("name") in self.names
        # celery.beat: 'Scheduler: Sending due task %s (%s)', entry.name, entry.task
        args = record.args if isinstance(record.args, tuple) else ()
        return any(arg in self.names for arg in args)


# Attributes every LogRecord has: anything else on a record is an extra worth writing out.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "data"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def escape(text: str) -> str:
    """``text`` on one line: control characters as ``\\n``, ``\\r``, ``\\t``, ``\\xNN``."""
    return _CONTROL.sub(_escaped, text)


def _utc(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """gunicorn's access line as fields, from its atoms (never the headers or environ)."""
    atoms = record.args
    if record.name != "gunicorn.access" or not isinstance(atoms, Mapping):
        return {}
    fields: dict[str, Any] = {
        "remote": atoms["h"],
        "method": atoms["m"],
        "path": atoms["U"],
        "status": int(str(atoms["s"])) if str(atoms["s"]).isdigit() else atoms["s"],
        "bytes": atoms["B"],
        "duration_ms": atoms["M"],
        "user_agent": atoms["a"],
    }
    request_id = atoms["{x-request-id}o"]
    if request_id != "-":
        fields["request_id"] = request_id
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        entry.update(_access_fields(record))
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [request_id] message``, the message escaped onto one line."""

    def format(self, record: logging.LogRecord) -> str:
        context = getattr(record, "request_id", None) or _access_fields(record).get("request_id")
        line = (
            f"{_utc(record.created)} {record.levelname} {record.name}"
            f"{f' [{context}]' if context else ''} {escape(record.getMessage())}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(fmt: LogFormat, level: str, *, quiet_tasks: Sequence[str] = ()) -> None:
    """Apply :func:`logging_config` to this process; Python's warnings become log lines."""
    logging.config.dictConfig(logging_config(fmt, level, quiet_tasks=quiet_tasks))
    logging.captureWarnings(True)


class LinesToLog(io.TextIOBase):
    """A text stream whose lines become log records: in place of ``sys.stdout`` it turns what a
    library prints (Celery's shutdown notices) into lines of the log's format."""

    def __init__(self, logger: str, level: int = logging.INFO) -> None:
        super().__init__()
        self._log = logging.getLogger(logger)
        self._level = level
        self._pending = ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line.strip():
                self._log.log(self._level, line.strip())
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self._log.log(self._level, self._pending.strip())
        self._pending = ""

    def isatty(self) -> bool:
        return False

    def fileno(self) -> Any:
        # No descriptor: Celery writes its shutdown notice straight to the stream's descriptor
        # when it has one, and leaves it out otherwise (the worker logs its shutdown instead).
        return None

    def writable(self) -> bool:
        return True


def log_format(configured: LogFormat | None, *, command: str) -> LogFormat:
    """The format a command writes: ``SCIM_BRIDGE_LOG_FORMAT`` when set; otherwise text for
    ``scim-bridge dev`` on a terminal, JSON for everything else (``serve``, ``worker``,
    ``beat``, and ``dev`` whose output is collected)."""
    if configured is not None:
        return configured
    return "text" if command == "dev" and sys.stdout.isatty() else "json"


def logging_config(
    fmt: LogFormat, level: str, *, quiet_tasks: Sequence[str] = ()
) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dictionary: every line to stderr in ``fmt``.

    gunicorn takes it as its ``logconfig_dict`` (its error and access loggers propagate to the
    root handler); the worker and beat apply it in Celery's ``setup_logging`` signal.
    """
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    quiet = {"filters": ["quiet"]} if quiet_tasks else {}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": f"{__name__}.ContextFilter"},
            "quiet": {"()": f"{__name__}.QuietTasks", "names": list(quiet_tasks)},
        },
        "formatters": {"main": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "main": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "main",
                "filters": ["context"],
            }
        },
        "root": {"level": level.upper(), "handlers": ["main"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
            **{
                name: {"level": "NOTSET", **quiet}
                for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace")
            },
        },
    }
