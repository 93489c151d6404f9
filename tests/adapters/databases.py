"""Fresh, uniquely named databases on SQLite, PostgreSQL and MariaDB for the sql adapter's tests.

PostgreSQL and MariaDB are the machine's servers (127.0.0.1:5432 and :3306); a test using one
that is not running is skipped with the reason. Each test gets its own database (MariaDB) or
schema (PostgreSQL), named ``sbt_<random>`` and dropped afterwards, so parallel runs never meet.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test"
KINDS = ["sqlite", "postgresql", "mariadb"]


def _reachable(url: str, kind: str) -> None:
    engine = create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any reason the server cannot be used skips this database only
        pytest.skip(f"{kind} is not running at {url}: {type(exc).__name__}: {exc}")
    finally:
        engine.dispose()


def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of ``kind``, dropped after the test."""
    name = f"sbt_{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'{name}.db'}"
        return
    if kind == "postgresql":
        pytest.importorskip("psycopg")
        _reachable(POSTGRES, kind)
        admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"CREATE SCHEMA {name}"))
        try:
            yield f"{POSTGRES}?options=-csearch_path%3D{name}"
        finally:
            with admin.connect() as connection:
                connection.execute(text(f"DROP SCHEMA {name} CASCADE"))
            admin.dispose()
        return
    pytest.importorskip("pymysql")
    _reachable(MARIADB, kind)
    admin = create_engine(MARIADB, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    try:
        yield MARIADB.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE {name}"))
        admin.dispose()


def hr_schema(dialect: str) -> list[str]:
    """An HR application's tables: no SCIM id column, status letters, NOT NULL audit columns."""
    serial = {
        "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "postgresql": "SERIAL PRIMARY KEY",
        "mysql": "INTEGER AUTO_INCREMENT PRIMARY KEY",
        "mariadb": "INTEGER AUTO_INCREMENT PRIMARY KEY",
    }[dialect]
    stamp = "DATETIME(6) NULL" if dialect in ("mysql", "mariadb") else "TIMESTAMP NULL"
    return [
        f"""CREATE TABLE employees (
            emp_no {serial},
            login VARCHAR(64) NOT NULL UNIQUE,
            fname VARCHAR(40),
            lname VARCHAR(40),
            mail VARCHAR(120),
            dept VARCHAR(40),
            status CHAR(1) NOT NULL,
            pwd VARCHAR(100),
            hired DATE,
            created_by VARCHAR(20) NOT NULL,
            modified {stamp}
        )""",
        f"""CREATE TABLE roles (
            role_id {serial},
            role_name VARCHAR(80) NOT NULL UNIQUE,
            description VARCHAR(200)
        )""",
        """CREATE TABLE employee_roles (
            role_id INTEGER NOT NULL REFERENCES roles (role_id),
            emp_no INTEGER NOT NULL REFERENCES employees (emp_no),
            granted_by VARCHAR(20) NOT NULL,
            PRIMARY KEY (role_id, emp_no)
        )""",
    ]


HR_MAPPING = """
[users]
table = "employees"
key = "emp_no"
id_column = ""
changed = "modified"

[users.columns]
userName = "login"
"name.givenName" = "fname"
"name.familyName" = "lname"
"emails[type eq \\"work\\"].value" = "mail"
"urn:okta:onprem_app:1.0:user:custom:departmentName" = "dept"
"urn:okta:onprem_app:1.0:user:custom:hireDate" = "hired"

[users.active]
column = "status"
true = "A"
false = "T"

[users.password]
column = "pwd"
scheme = "bcrypt"

[users.defaults]
created_by = "okta"

[groups]
table = "roles"
key = "role_id"

[groups.columns]
displayName = "role_name"
description = "description"

[groups.members]
table = "employee_roles"
group = "role_id"
user = "emp_no"

[groups.members.defaults]
granted_by = "okta"

[link]
table = "scim_bridge_links"
"""
