"""Values between SCIM documents and columns: booleans as any pair, dates, lengths, numbers.

A value that a column cannot hold is refused here, before any statement runs, with a
:class:`PermanentError` naming the attribute, the column and the limit, so an administrator can
fix the profile or widen the column; nothing is written.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Date, DateTime, Integer, Numeric, String

from scim_bridge.adapters.errors import PermanentError
from scim_bridge.adapters.sql.model import ColumnMap


def to_column(column_map: ColumnMap, column: Column[Any], value: Any) -> Any:
    """``value`` (from the SCIM document at ``column_map.path``) as ``column`` stores it."""
    if value is None:
        return None
    kind = column.type
    if column_map.boolean is not None:
        return column_map.boolean.to_stored(_boolean(column_map, value))
    if isinstance(kind, Boolean):
        return _boolean(column_map, value)
    if isinstance(kind, JSON):
        return value
    if isinstance(kind, DateTime):
        return _naive_if(kind, _datetime(column_map, value))
    if isinstance(kind, Date):
        return _datetime(column_map, value).date()
    if isinstance(kind, Integer):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _refused(column_map, column, f"a {type(value).__name__} is not a whole number")
        try:
            return int(value)
        except ValueError:
            raise _refused(column_map, column, f"{value!r} is not a whole number") from None
    if isinstance(kind, Numeric):
        try:
            return Decimal(str(value))
        except ArithmeticError:
            raise _refused(column_map, column, f"{value!r} is not a number") from None
    if isinstance(value, dict | list):
        raise _refused(
            column_map, column, "a complex or multi-valued attribute needs a JSON column"
        )
    if column_map.date_format is not None:
        text = _datetime(column_map, value).strftime(column_map.date_format)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    check_length(column_map.path.text, column, text)
    return text


def from_column(column_map: ColumnMap, column: Column[Any], stored: Any) -> Any:
    """A stored value as the SCIM document holds it."""
    if stored is None:
        return None
    if column_map.boolean is not None:
        return column_map.boolean.from_stored(stored)
    if isinstance(column.type, Boolean):
        return bool(stored)
    if isinstance(stored, datetime):
        return _iso(stored)
    if isinstance(stored, date):
        return stored.isoformat()
    if column_map.date_format is not None and isinstance(stored, str):
        try:
            return datetime.strptime(stored, column_map.date_format).date().isoformat()
        except ValueError:
            return stored
    if isinstance(stored, Decimal):
        return int(stored) if stored == stored.to_integral_value() else float(stored)
    if isinstance(stored, str) and isinstance(column.type, String) and _is_char(column):
        return stored.rstrip()  # CHAR(n) pads with blanks
    if isinstance(stored, bytes):
        return stored.decode("utf-8", "replace")
    return stored


def check_length(attribute: str, column: Column[Any], text: str) -> None:
    """Refuse ``text`` when it is longer than ``column`` holds."""
    length = getattr(column.type, "length", None)
    if isinstance(length, int) and len(text) > length:
        raise PermanentError(
            f"{attribute} is {len(text)} characters long; column {column.table.name}.{column.name}"
            f" holds at most {length}: shorten the value in Okta or widen the column"
        )


def stamp(column: Column[Any]) -> Any:
    """The current time as ``column`` stores it (UTC; naive for columns without a zone)."""
    now = datetime.now(UTC)
    if isinstance(column.type, DateTime):
        return _naive_if(column.type, now)
    if isinstance(column.type, Date):
        return now.date()
    if isinstance(column.type, Integer):
        return int(now.timestamp())
    return now.strftime("%Y-%m-%d %H:%M:%S.%f")


def default_value(column: Column[Any], value: Any) -> Any:
    """A ``[*.defaults]`` value as the column stores it (``"now"`` stamps a time column)."""
    if value == "now" and isinstance(column.type, DateTime | Date):
        return stamp(column)
    if isinstance(column.type, JSON) or not isinstance(value, dict | list):
        return value
    return json.dumps(value)


def _boolean(column_map: ColumnMap, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise PermanentError(f"{column_map.path.text} must be true or false, not {value!r}")


def _datetime(column_map: ColumnMap, value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise PermanentError(
            f"{column_map.path.text}: {value!r} is not a date or time (ISO 8601, e.g."
            f" 2024-05-01 or 2024-05-01T09:30:00Z), which column {column_map.column} holds"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _naive_if(kind: DateTime, value: datetime) -> datetime:
    if kind.timezone:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        return value.isoformat() + "Z"
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _is_char(column: Column[Any]) -> bool:
    return type(column.type).__name__.upper() in ("CHAR", "NCHAR")


def _refused(column_map: ColumnMap, column: Column[Any], why: str) -> PermanentError:
    return PermanentError(
        f"{column_map.path.text} cannot be stored in column {column.table.name}.{column.name}"
        f" ({column.type}): {why}"
    )
