"""The sans-IO SWIM core: feed it inputs, drain its outputs, tick it at its deadlines."""

from .antientropy import push_pull_scale
from .instance import MetadataTooLarge, SwimInstance
from .outputs import DeliverUser, EmitEvent, Output, SendPacket, StartStream, StreamPurpose
from .stats import Stats
from .suspicion import Suspicion, suspicion_bounds, suspicion_timeout

__all__ = [
    "DeliverUser",
    "EmitEvent",
    "MetadataTooLarge",
    "Output",
    "SendPacket",
    "StartStream",
    "Stats",
    "StreamPurpose",
    "Suspicion",
    "SwimInstance",
    "push_pull_scale",
    "suspicion_bounds",
    "suspicion_timeout",
]
