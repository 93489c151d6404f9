"""``scim-bridge check``: replay the Okta Provisioning Agent's requests against a running connector.

Like Okta's SDK tester, but for the whole lifecycle: capabilities, check-exists, push of a new and
of a pending user, full and incremental import, get by id, profile and password pushes,
deactivation, reactivation, a duplicate create, group push, bad credentials, and a cleanup that
deactivates every user the check created (Okta never deletes users). Each step prints PASS, FAIL
or SKIP with its reason; the exit status is 0 only when no step failed.

In SCIM 1.1 mode every User, Group and ListResponse answer also goes through a strict SCIM 1.x
check (``scim_bridge.check.strict_v1``): the agent's parser rejects
a whole import page for one SCIM 2.0 URN or one unknown top-level key.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Sequence
from typing import TextIO

from scim_bridge.check.lifecycle import Checker
from scim_bridge.check.protocol import VERSIONS, Connector, basic_credentials, header_credentials

HELP = "replay the Okta Provisioning Agent's requests against a running connector"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``check`` command's arguments (shared by ``scim-bridge check`` and :func:`main`)."""
    parser.add_argument("url", metavar="URL", help="the connector's SCIM base URL")
    parser.add_argument(
        "--scim",
        choices=sorted(VERSIONS),
        default=None,
        help="the SCIM version to speak (default: 2.0 when URL contains /v2/, as the agent does)",
    )
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--basic", metavar="USER:PASSWORD", type=basic_credentials, help="HTTP Basic credentials"
    )
    auth.add_argument(
        "--header",
        metavar="'Name: value'",
        type=header_credentials,
        help="one header carrying the secret, e.g. 'Authorization: Bearer …'",
    )
    parser.add_argument(
        "--timeout", metavar="S", type=float, default=30.0, help="per request (default 30)"
    )
    parser.add_argument(
        "--unique-field",
        metavar="NAME",
        default="userName",
        help="the attribute of the check-exists filter (Okta's 'Unique user field name'); "
        "the value it looks for is the test user's userName, also its primary email",
    )
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument(
        "--ca-file",
        metavar="PEM",
        help="verify the connector's certificate against these CA certificates (a private CA) "
        "instead of the system's",
    )
    trust.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    parser.add_argument(
        "--progress",
        action="store_true",
        help="show import progress on stderr even when it is not a terminal",
    )


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Check the connector ``args`` names; the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    url: str = args.url
    version = args.scim or ("2.0" if "/v2/" in url.rstrip("/") + "/" else "1.1")
    progress = err if args.progress or err.isatty() else None
    verify: ssl.SSLContext | bool = not args.insecure
    if args.ca_file:
        try:
            verify = ssl.create_default_context(cafile=args.ca_file)
        except (OSError, ssl.SSLError) as exc:
            print(f"--ca-file {args.ca_file}: cannot read CA certificates: {exc}", file=err)
            return 2
    connector = Connector(
        url,
        args.basic or args.header or {},
        timeout_s=args.timeout,
        verify=verify,
    )
    checker = Checker(
        connector,
        VERSIONS[version],
        unique_field=args.unique_field,
        out=out,
        progress=progress,
    )
    try:
        return checker.run()
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``scim-bridge check`` on its own: parse ``argv``, check, return the exit status."""
    parser = argparse.ArgumentParser(prog="scim-bridge check", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv), out=out, err=err)
