"""The sans-IO SWIM core: feed it inputs, drain its outputs, tick it at its deadlines."""

from .instance import MetadataTooLarge, Stats, SwimInstance, push_pull_scale
from .outputs import DeliverUser, EmitEvent, Output, SendPacket, StartStream
from .suspicion import Suspicion, suspicion_bounds, suspicion_timeout

__all__ = [
    "DeliverUser",
    "EmitEvent",
    "MetadataTooLarge",
    "Output",
    "SendPacket",
    "StartStream",
    "Stats",
    "Suspicion",
    "SwimInstance",
    "push_pull_scale",
    "suspicion_bounds",
    "suspicion_timeout",
]
