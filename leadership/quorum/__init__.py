"""The quorum lease store's protocol core, free of I/O (DESIGN.md 5, "Leases and fencing").

A PaxosLease-style protocol: a candidate asks a static, epoch-numbered set of voters for a lease
on a scope; a majority of grants makes it leader until ``start + min(granted) * (1 - eps) /
(1 + eps)`` on its own clock, where ``start`` was read before the request left. Voters promise
terms (the fence tokens) durably and grant by the rule in :mod:`.voter`.

The rooms: :mod:`.membership` (voter configurations), :mod:`.wire` (messages and their plain
encoding), :mod:`.durable` (promised terms that survive restarts), :mod:`.voter` (the grant rule),
:mod:`.candidate` (rounds, quorum counting, validity). Each takes messages and a clock reading and
returns messages and decisions, so randomized schedules drive the same code the agent runs.
"""

from .candidate import (
    Abandoned,
    Elected,
    LeaseCandidate,
    Outbound,
    Refused,
    Renewed,
    RoundStep,
)
from .durable import FilePromises, MemoryPromises, PromiseState, PromiseStore
from .membership import VoterConfig, VoterConfigError
from .voter import LeaseVoter, VoterStatus
from .wire import (
    LeaseReply,
    LeaseRequest,
    QuorumWireError,
    ReleaseRequest,
    RoundEntry,
    Verdict,
    decode,
    encode,
)

__all__ = [
    "Abandoned",
    "Elected",
    "FilePromises",
    "LeaseCandidate",
    "LeaseReply",
    "LeaseRequest",
    "LeaseVoter",
    "MemoryPromises",
    "Outbound",
    "PromiseState",
    "PromiseStore",
    "QuorumWireError",
    "Refused",
    "ReleaseRequest",
    "Renewed",
    "RoundEntry",
    "RoundStep",
    "Verdict",
    "VoterConfig",
    "VoterConfigError",
    "VoterStatus",
    "decode",
    "encode",
]
