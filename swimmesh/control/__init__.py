"""The HTTP control plane: JSON views, Prometheus metrics, health, and token-guarded actions."""

from .app import build_app
from .host import ControlHost, KeyOperations

__all__ = ["ControlHost", "KeyOperations", "build_app"]
