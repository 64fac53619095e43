"""Dissemination: every packet this node sends, and the gossip that rides on it.

Claims and overlay broadcasts wait in the transmit-limited :class:`BroadcastQueue`. Each
outgoing packet (probe, ack, ping-req, ...) is filled up to the datagram budget with the
least-transmitted of them, and a free-running gossip ticker sends more to random peers while
the queue is not empty. The budget is ``udp_buffer_size`` minus the envelope and whatever the
transport adds (a seal), so nothing on the wire exceeds ``udp_buffer_size``.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Hashable

from .. import codec
from ..config import MeshConfig
from ..member import Address, Claim
from ..messages import ClaimMessage, UserMessage
from .broadcasts import BroadcastQueue
from .outputs import Output, SendPacket
from .stats import Stats
from .table import MemberTable
from .timers import Timer, TimerQueue

SEEN_USER_LIMIT = 4096
"""Overlay broadcasts remembered (kind, key and payload) to deliver each payload once."""


class Gossip:
    """The broadcast queue, packet emission and the gossip ticker of one node."""

    def __init__(
        self,
        config: MeshConfig,
        table: MemberTable,
        timers: TimerQueue,
        rng: random.Random,
        stats: Stats,
        outbox: list[Output],
        now: float,
        packet_overhead: int = 0,
    ) -> None:
        self._config = config
        self._label = config.cluster_label
        self._table = table
        self._timers = timers
        self._rng = rng
        self._stats = stats
        self._outbox = outbox
        self.budget = (
            config.udp_buffer_size - codec.packet_header_size(self._label) - packet_overhead
        )
        """Bytes of encoded messages that fit in one datagram."""
        self.queue = BroadcastQueue()
        self._timer: Timer | None = None
        self._phase = now + rng.uniform(0, config.gossip_interval)
        self._seen_user: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._user_seq = 0

    def retransmit_limit(self) -> int:
        """memberlist's ``mult * ceil(log10(n + 1))``, but never below ``2 * mult``: during a
        join storm a claim queued while the mesh was tiny would otherwise retire after a handful
        of sends and miss the nodes that join meanwhile (Serf's join tail)."""
        mult = self._config.retransmit_mult
        return mult * max(2, math.ceil(math.log10(self._table.live + 1)))

    # -- sending -----------------------------------------------------------------------

    def send(self, address: Address, primary: list[bytes]) -> None:
        """Send ``primary`` messages to ``address``, with as much gossip as fits beside them."""
        budget = self.budget - sum(len(m) for m in primary)
        piggyback = self.queue.take(budget, self.retransmit_limit()) if self.queue else []
        self._emit(address, primary + piggyback)

    def _emit(self, address: Address, messages: list[bytes]) -> None:
        data = codec.encode_packet(self._label, messages)
        self._stats.packets_sent += 1
        self._stats.bytes_sent += len(data)
        self._outbox.append(SendPacket(address, data))

    def tick(self, now: float) -> None:
        """Send queued gossip to ``gossip_nodes`` random peers."""
        self._timer = None
        limit = self.retransmit_limit()
        for name in self._table.gossip.sample(self._rng, self._config.gossip_nodes):
            if not self.queue:
                break
            msgs = self.queue.take(self.budget, limit)
            if msgs:
                self._emit(self._table[name].address, msgs)
        if self.queue:
            self.arm(now)

    def arm(self, now: float) -> None:
        """Gossip at this node's next tick of a virtual ticker (phase drawn at start), like
        memberlist's free-running ticker: news waits half an interval on average, and an idle
        node (empty queue) never wakes for gossip."""
        if self._timer is None:
            interval = self._config.gossip_interval
            ticks = math.floor((now - self._phase) / interval) + 1
            deadline = self._phase + ticks * interval
            if deadline <= now:
                # float rounding put "the next tick" at this very instant (now on a tick, as a
                # mock clock lands exactly): re-arming there would tick again forever
                deadline += interval
            self._timer = self._timers.schedule(deadline, self.tick)

    # -- queueing ----------------------------------------------------------------------

    def put(self, key: Hashable, encoded: bytes, now: float) -> None:
        """Queue an encoded message for gossip, replacing any under the same key."""
        self.queue.queue(key, encoded)
        self.arm(now)

    def put_claim(self, claim: Claim, now: float) -> bytes:
        """Queue a claim (superseding older news about the same member); return it encoded."""
        encoded = codec.encode_message(ClaimMessage(claim))
        self.put(claim_key(claim.name), encoded, now)
        return encoded

    def broadcast_user(self, kind: str, payload: bytes, key: str | None, now: float) -> None:
        """Gossip an overlay message to every node; a newer payload under the same key
        replaces the queued one."""
        if key is None:
            self._user_seq += 1
            key = f"{self._config.name}/{self._user_seq}"
        self._seen_user[(kind, key)] = payload
        self._put_user(kind, key, payload, now)

    def first_sighting(self, kind: str, key: str, payload: bytes, now: float) -> bool:
        """Remember a broadcast; True (and re-gossip it) the first time this payload is seen."""
        seen = self._seen_user
        if seen.get((kind, key)) == payload:
            return False
        seen[(kind, key)] = payload
        seen.move_to_end((kind, key))
        if len(seen) > SEEN_USER_LIMIT:
            seen.popitem(last=False)
        self._put_user(kind, key, payload, now)
        return True

    def _put_user(self, kind: str, key: str, payload: bytes, now: float) -> None:
        self.put(("u", kind, key), codec.encode_message(UserMessage(kind, payload, key)), now)


def claim_key(name: str) -> Hashable:
    """The broadcast key of claims about ``name``: a newer one replaces the queued one."""
    return ("m", name)
