"""Transports: the in-memory network (tests, simulations) and, with the network layer, UDP."""

from .base import StreamHandler, Transport, TransportError
from .memory import EndpointStats, MemoryNetwork, MemoryTransport

__all__ = [
    "EndpointStats",
    "MemoryNetwork",
    "MemoryTransport",
    "StreamHandler",
    "Transport",
    "TransportError",
]
