"""The bundle test processes a real event against the emulators: it shares the local-stack
fixture of the integration tests (started only when a test asks for it)."""

from tests.integration.conftest import stack  # noqa: F401  (a pytest fixture)
