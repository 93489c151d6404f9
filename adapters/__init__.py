"""The adapter port: how scim-bridge talks to a legacy application.

``port`` defines the class a legacy application implements, ``errors`` the only errors it
raises, ``registry`` finds adapters by entry point, ``contract`` is the test kit every adapter
passes, and ``memory``, ``sql`` and ``simulate`` are the built-ins.
"""
