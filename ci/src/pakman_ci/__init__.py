"""PAKman's Dagger module."""

from pakman_ci.main import Pakman

__all__ = ["Pakman"]
