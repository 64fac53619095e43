"""The HTTP control plane: JSON views, Prometheus metrics, health, and token-guarded actions."""

from .app import build_app

__all__ = ["build_app"]
