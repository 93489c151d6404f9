"""The Redis store: the one package that knows the key layout (see docs/architecture.md)."""
