"""The sans-IO SWIM core: feed it inputs, drain its outputs, tick it at its deadlines."""

from .antientropy import push_pull_scale
from .instance import MessageTooLarge, MetadataTooLarge, SwimInstance, formed_mesh
from .outputs import DeliverUser, EmitEvent, Output, SendPacket, StartStream, StreamPurpose
from .stats import Stats
from .suspicion import Suspicion, suspicion_bounds, suspicion_timeout
from .table import FormedMesh

__all__ = [
    "DeliverUser",
    "EmitEvent",
    "FormedMesh",
    "MessageTooLarge",
    "MetadataTooLarge",
    "Output",
    "SendPacket",
    "StartStream",
    "Stats",
    "StreamPurpose",
    "Suspicion",
    "SwimInstance",
    "formed_mesh",
    "push_pull_scale",
    "suspicion_bounds",
    "suspicion_timeout",
]
