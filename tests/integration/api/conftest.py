"""Fixtures of the API tests (defined in api_support)."""

from api_support import anyio_backend, api, runner

__all__ = ["anyio_backend", "api", "runner"]
