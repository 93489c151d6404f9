"""``scim-bridge check``: a client that replays the Okta Provisioning Agent's requests against a
running connector. It speaks HTTP only and shares no code with the server it checks."""
