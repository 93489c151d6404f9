"""The adapter port: how scim-bridge talks to a legacy application.

``port`` defines the class a legacy application implements, ``errors`` the only errors it
raises, ``registry`` finds adapters by entry point, ``contract`` is the test kit every adapter
passes, and ``memory``, ``sql`` and ``simulate`` are the built-ins. ``mapping`` is the
storage-neutral half of declarative mappings (SCIM attribute paths, the ``active`` pair, password
schemes), shared by mapping-driven adapters; the ``sql`` package's mapping is documented in
``docs/sql-mapping.md``.
"""
