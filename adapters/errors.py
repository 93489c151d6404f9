"""The only errors an adapter may raise.

The reconciler decides what to do from the error's type alone:

- :class:`TransientError`: the legacy application could not answer now (timeout, connection
  refused, 503). The change is retried with backoff; nothing is reported to Okta yet.
- :class:`PermanentError`: the legacy application refused the data. The change goes to the
  dead-letter store, the read model rolls back to the applied state, and the message is shown
  to the Okta administrator, so write it for them ("department 'X' does not exist").
- :class:`ConflictError`: the legacy application already holds another record with a unique
  value of this one (a taken login name). Rendered as SCIM ``uniqueness``.
"""


class AdapterError(Exception):
    """Base class of the port's errors; never raised itself."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransientError(AdapterError):
    """The legacy application may accept the same call later."""


class PermanentError(AdapterError):
    """The legacy application refused the call; repeating it cannot succeed."""


class ConflictError(PermanentError):
    """A unique value of the resource is taken in the legacy application."""
