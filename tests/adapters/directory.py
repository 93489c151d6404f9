"""A real OpenLDAP ``slapd`` for the test session: its own cn=config, database and port.

:class:`Slapd` writes a configuration LDIF (the core, cosine, inetorgperson and nis schemas from
``/etc/ldap/schema``, an mdb database under ``dc=corp,dc=example`` with a root DN, a read-only
account whose unpaged searches are capped at 10 entries, as directories cap them, and TLS with
a certificate from :class:`tests.support.Pki`), loads it with ``slapadd -n0`` into a temporary
``cn=config`` directory and runs ``/usr/sbin/slapd -h "ldap://127.0.0.1:PORT/ ldaps://..." -F
confdir`` in the foreground. It can be stopped and started again on the same ports and data (the
restart tests). Debian's ``slapd`` and ``ldap-utils`` packages provide the binaries;
``scripts/test.sh`` installs them when they are missing.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

from scim_bridge.cli.processes import free_port, port_open, wait_until
from tests.support import Pki

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
SUFFIX = "dc=corp,dc=example"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret"
READER_DN = f"cn=reader,{SUFFIX}"
READER_PASSWORD = "reader-secret"


def slapd_missing() -> str | None:
    """Why the directory cannot be started here, or ``None``."""
    for binary in (SLAPD, SLAPADD):
        if shutil.which(binary) is None:
            return (
                f"{binary} is not installed (Debian's slapd package; scripts/test.sh installs it)"
            )
    for schema in SCHEMAS:
        if not (SCHEMA_DIR / f"{schema}.ldif").exists():
            return f"{SCHEMA_DIR / schema}.ldif is missing (Debian's slapd package)"
    return None


class Slapd:
    """One slapd with its own configuration and database under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.tls_port = free_port()
        self.config_dir = root / "slapd.d"
        self.data_dir = root / "data"
        self.ca_file = root / "ca.pem"  # written by Pki
        self.process: subprocess.Popen[bytes] | None = None
        self._configure()
        self.start()

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def _configure(self) -> None:
        self.config_dir.mkdir(parents=True)
        self.data_dir.mkdir(parents=True)
        pki = Pki(self.root)  # its CA is ca_file
        certificate, key = pki.cert, pki.key
        includes = "\n".join(f"include: file://{SCHEMA_DIR / s}.ldif" for s in SCHEMAS)
        config = textwrap.dedent(
            f"""\
            dn: cn=config
            objectClass: olcGlobal
            cn: config
            olcPidFile: {self.root / "slapd.pid"}
            olcTLSCertificateFile: {certificate}
            olcTLSCertificateKeyFile: {key}

            dn: cn=module{{0}},cn=config
            objectClass: olcModuleList
            cn: module{{0}}
            olcModulePath: /usr/lib/ldap
            olcModuleLoad: back_mdb

            dn: cn=schema,cn=config
            objectClass: olcSchemaConfig
            cn: schema

            {{includes}}

            dn: olcDatabase={{0}}config,cn=config
            objectClass: olcDatabaseConfig
            olcDatabase: {{0}}config
            olcAccess: to * by * none

            dn: olcDatabase={{1}}mdb,cn=config
            objectClass: olcDatabaseConfig
            objectClass: olcMdbConfig
            olcDatabase: {{1}}mdb
            olcSuffix: {SUFFIX}
            olcRootDN: {ROOT_DN}
            olcRootPW: {ROOT_PASSWORD}
            olcDbDirectory: {self.data_dir}
            olcDbMaxSize: 1073741824
            olcDbIndex: objectClass eq
            olcDbIndex: entryUUID eq
            olcDbIndex: uid eq
            olcDbIndex: cn eq
            olcDbIndex: member eq
            olcDbIndex: memberUid eq
            olcLimits: dn.exact="{READER_DN}" size.soft=10 size.hard=10 size.prtotal=unlimited
            olcAccess: to attrs=userPassword by self write by anonymous auth by * none
            olcAccess: to * by dn.exact="{READER_DN}" read by * none
            """
        ).replace("{includes}", includes)
        data = textwrap.dedent(
            f"""\
            dn: {SUFFIX}
            objectClass: dcObject
            objectClass: organization
            dc: corp
            o: Corp

            dn: {READER_DN}
            objectClass: organizationalRole
            objectClass: simpleSecurityObject
            cn: reader
            userPassword: {READER_PASSWORD}
            """
        )
        (self.root / "config.ldif").write_text(config)
        (self.root / "data.ldif").write_text(data)
        for argv in (
            [SLAPADD, "-n0", "-F", str(self.config_dir), "-l", str(self.root / "config.ldif")],
            [SLAPADD, "-n1", "-F", str(self.config_dir), "-l", str(self.root / "data.ldif")],
        ):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr}")

    def start(self) -> None:
        """Run slapd in the foreground (``-d 0``) until :meth:`stop`."""
        urls = f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.tls_port}/"
        self.process = subprocess.Popen(
            [SLAPD, "-h", urls, "-F", str(self.config_dir), "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "slapd.log", "ab"),  # noqa: SIM115 - kept by the child
        )
        try:
            wait_until(lambda: port_open(self.port) and port_open(self.tls_port), timeout=30)
        except Exception:
            log = (self.root / "slapd.log").read_text(errors="replace")
            self.stop()
            raise RuntimeError(f"slapd did not start: {log[-2000:]}") from None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def new_tree(self) -> str:
        """A fresh, empty ``ou=t<hex>`` under the suffix with ``ou=people`` and ``ou=groups``."""
        from ldap3 import Connection, Server

        base = f"ou=t{uuid.uuid4().hex[:12]},{SUFFIX}"
        with Connection(Server(self.url), ROOT_DN, ROOT_PASSWORD, auto_bind=True) as connection:
            for dn in (base, f"ou=people,{base}", f"ou=groups,{base}"):
                connection.add(dn, ["organizationalUnit"])
                assert connection.result["result"] == 0, connection.result
        return base

    def connection(self) -> object:
        """A root connection for tests to look at the directory as an operator would."""
        from ldap3 import Connection, Server

        return Connection(Server(self.url), ROOT_DN, ROOT_PASSWORD, auto_bind=True)


ACTIVE_PASSWORD_AND_GROUPS = """\
[users.active]
attribute = "employeeType"
true = "active"
false = "disabled"
[users.password]
attribute = "userPassword"
scheme = "ssha"

[groups]
base = "ou=groups,{base}"
object_classes = ["groupOfNames"]
rdn = "cn"
member_attribute = "member"
[groups.attributes]
displayName = "cn"
description = "description"
"""

INET_ORG_PERSON = (
    """\
[ldap]
url = "{url}"
bind_dn = "{bind_dn}"
bind_password_file = "{password_file}"

[users]
base = "ou=people,{base}"
object_classes = ["inetOrgPerson"]
rdn = "uid"
filter = "(objectClass=inetOrgPerson)"
changed = "modifyTimestamp"
[users.attributes]
userName = "uid"
"name.givenName" = "givenName"
"name.familyName" = "sn"
displayName = "cn"
"emails[type eq \\"work\\"].value" = "mail"
"""
    + ACTIVE_PASSWORD_AND_GROUPS
)

POSIX_GROUP = """\
[ldap]
url = "{url}"
bind_dn = "{bind_dn}"
bind_password_file = "{password_file}"
start_tls = true
ca_file = "{ca_file}"

[users]
base = "ou=people,{base}"
object_classes = ["inetOrgPerson"]
rdn = "uid"
changed = "modifyTimestamp"
[users.attributes]
userName = "uid"
"name.givenName" = "givenName"
"name.familyName" = "sn"
displayName = "cn"
"emails[primary eq true].value" = "mail"
[users.active]
attribute = "employeeType"
true = "A"
false = "T"
[users.password]
attribute = "userPassword"
scheme = "server"

[groups]
base = "ou=groups,{base}"
object_classes = ["posixGroup"]
rdn = "cn"
member_attribute = "memberUid"
member_value = "uid"
[groups.attributes]
displayName = "cn"
description = "description"
"""


def write_mapping(
    server: Slapd,
    directory: Path,
    template: str = INET_ORG_PERSON,
    *,
    base: str | None = None,
    bind_dn: str = ROOT_DN,
    password: str = ROOT_PASSWORD,
) -> Path:
    """A mapping file for a fresh tree (or ``base``) of ``server``; its bind password in a
    file beside it."""
    password_file = directory / f"bind-{uuid.uuid4().hex[:8]}"
    password_file.write_text(password + "\n")
    mapping = directory / f"mapping-{uuid.uuid4().hex[:8]}.toml"
    mapping.write_text(
        template.format(
            url=server.url,
            bind_dn=bind_dn,
            password_file=password_file,
            ca_file=server.ca_file,
            base=base or server.new_tree(),
        )
    )
    return mapping
