"""Engine tests for PAKman's Dagger module (run where an engine exists)."""

from pakman_tests.main import Tests

__all__ = ["Tests"]
