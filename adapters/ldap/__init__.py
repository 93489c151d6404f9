"""The ``ldap`` adapter: a legacy application whose users and groups are entries of a directory
(OpenLDAP, Active Directory, any LDAPv3 server).

The entries are described by a declarative mapping (``docs/ldap.md``): :mod:`.model` parses the
TOML file, :mod:`.check` validates it against the live directory's schema, :mod:`.entries`
converts documents to entries and back (with RFC 4514/4515 escaping), :mod:`.connection` holds
the connections, deadlines and errors, :mod:`.adapter` is the adapter and :mod:`.commands` is
``scim-bridge mapping check`` for LDAP mappings.
"""

from __future__ import annotations

from scim_bridge.adapters.ldap.adapter import LdapAdapter, capabilities_of
from scim_bridge.adapters.ldap.model import LdapMapping, load_mapping, parse_mapping

__all__ = ["LdapAdapter", "LdapMapping", "capabilities_of", "load_mapping", "parse_mapping"]
