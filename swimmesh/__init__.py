"""swimmesh: SWIM gossip membership with Lifeguard on Trio.

Start a node with ``MeshNode.open(MeshConfig.lan(name=..., bind=...), transport=...)``.
"""

from .clock import Clock, SkewedClock, TrioClock
from .codec import DecodeError
from .config import ConfigError, MeshConfig
from .errors import SwimmeshError
from .events import MemberEvent, MemberEventKind
from .member import Address, Member, MemberStatus
from .protocol import MessageTooLarge, MetadataTooLarge
from .runtime import EventSubscription, JoinError, MeshNode, RequestError
from .transport import Transport, TransportError
from .transport.net import NetOptions, NetTransport
from .transport.tls import TlsFileError, TlsPolicy

__version__ = "0.1.0"

__all__ = [
    "Address",
    "Clock",
    "ConfigError",
    "DecodeError",
    "EventSubscription",
    "JoinError",
    "Member",
    "MemberEvent",
    "MemberEventKind",
    "MemberStatus",
    "MeshConfig",
    "MeshNode",
    "MessageTooLarge",
    "MetadataTooLarge",
    "NetOptions",
    "NetTransport",
    "RequestError",
    "SkewedClock",
    "SwimmeshError",
    "TlsFileError",
    "TlsPolicy",
    "Transport",
    "TransportError",
    "TrioClock",
    "__version__",
]
