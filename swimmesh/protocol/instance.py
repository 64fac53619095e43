"""The SWIM + Lifeguard state machine, free of I/O and of any clock of its own.

Theory of operation
-------------------
A :class:`SwimInstance` is one node's whole protocol state. It is driven by four kinds of
call and answers through an outbox:

* **inputs**: ``receive_datagram`` / ``receive_messages`` (a packet from an address),
  ``handle_stream_request`` and ``stream_reply`` (the stream channel), and the local
  operations (``leave``, ``update_metadata``, ``broadcast_user``, ...). Each takes ``now``.
* **time**: ``next_deadline()`` is the earliest moment anything is due; the driver sleeps until
  then and calls ``tick(now)``, which runs every timer due at or before ``now`` in deadline
  order (insertion order among equals) and nothing else. Calling ``tick`` early is harmless;
  calling it late runs the overdue timers at once, with the late ``now``. Any input may move
  the next deadline, so the driver asks again after each call.
* **outputs**: ``drain()`` hands over, in the order they arose, every packet to send, stream
  to open, membership event and overlay delivery since the last drain, and empties the
  outbox. Nothing is sent until drained; draining twice yields nothing new.

Every claim about a member, from any source (gossip, a push-pull, a probe that failed, an
expired suspicion), goes through one path: ``apply_claim`` merges it into the member table
(:mod:`.table`); if the member's status changed, ``_status_changed`` carries out the
consequences of the transition, where the table has already moved the member between its
derived sets: it cancels or starts the suspicion timer (:mod:`.suspicion`), emits the
membership event the transition means (a SUSPECT -> ALIVE move is ``alive``, a return from
DEAD or LEFT is ``join``, DEAD is ``dead`` and LEFT is ``leave``), and schedules the reaping
of a tombstone. What was new is re-gossiped (:mod:`.gossip`). Claims about this node itself
are refuted instead, by raising the incarnation.

The rooms: :mod:`.probing` (the failure detector), :mod:`.suspicion` (timers that shrink with
confirmations), :mod:`.awareness` (Lifeguard's local health), :mod:`.gossip` and
:mod:`.broadcasts` (dissemination), :mod:`.table` (members and derived sets), :mod:`.stats`.
Everything random comes from the ``rng`` it was given, so a run with the same seed and the
same inputs is the same run.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Hashable, Iterable, Mapping

from .. import codec
from ..config import MeshConfig
from ..errors import SwimmeshError
from ..events import MemberEvent, MemberEventKind
from ..member import Address, Claim, Member, MemberState, MemberStatus
from ..messages import (
    Ack,
    ClaimMessage,
    Nack,
    PacketMessage,
    Ping,
    PingReq,
    PushPull,
    StreamMessage,
    StreamPing,
    UserMessage,
)
from .antientropy import AntiEntropy, push_pull_scale
from .awareness import Awareness
from .gossip import Gossip, claim_key
from .outputs import DeliverUser, EmitEvent, Output, StartStream, StreamPurpose
from .probing import Prober
from .stats import Stats
from .suspicion import SuspicionTracker
from .table import FormedMesh, MemberTable, claim_about
from .timers import TimerQueue

log = logging.getLogger("swimmesh.protocol")

_ALIVE, _SUSPECT, _DEAD, _LEFT = MemberStatus
_REASSERT_MEMORY = 4096
"""Peers remembered as recently told our incarnation (pruned of expired entries beyond)."""

TimerCallback = Callable[[float], None]


def formed_mesh(configs: Iterable[MeshConfig], now: float) -> FormedMesh:
    """The start of a mesh that is already formed: every node of ``configs`` alive with the
    claim it publishes when it starts (incarnation 0, its metadata). Simulations give it to
    every node (``SwimInstance(..., formed=...)``) to study a formed mesh of a size whose
    N x N join would not fit in memory; the nodes share its records until they change them."""
    return FormedMesh(
        (Claim(c.name, 0, _ALIVE, c.advertise_address, 0, dict(c.metadata)) for c in configs),
        now,
    )


class MetadataTooLarge(SwimmeshError, ValueError):
    """Local metadata whose encoded size exceeds ``max_metadata_bytes``."""


class MessageTooLarge(SwimmeshError, ValueError):
    """An overlay datagram that would not fit in ``udp_buffer_size`` with its envelope and the
    transport's seal (send it over the stream channel instead)."""


class SwimInstance:
    """One node's view of the mesh and its SWIM machinery."""

    def __init__(
        self,
        config: MeshConfig,
        now: float,
        rng: random.Random | None = None,
        *,
        packet_overhead: int = 0,
        formed: FormedMesh | None = None,
    ) -> None:
        """``formed``: start knowing every member of a formed mesh as alive (see
        :func:`formed_mesh`), as if the join had completed, instead of knowing only itself."""
        self.config = config
        self.name = config.name
        self.address: Address = config.advertise_address
        self.rng = rng if rng is not None else random.Random(config.seed)
        self.stats = Stats()
        self.incarnation = 0
        self.meta_version = 0
        self.metadata: Mapping[str, str] = dict(config.metadata)
        _check_metadata(self.metadata, config.max_metadata_bytes)
        self.leaving = False
        self.ack_listener: Callable[[str], None] | None = None
        """Called with a member's name on every ack from it (overlays record heartbeats)."""

        self._outbox: list[Output] = []
        self._timers = TimerQueue()
        self._awareness = Awareness(config.awareness_max)
        local = MemberState.from_claim(self._self_claim(), now)
        table = self._table = MemberTable(local, self.rng, formed)
        timers, rng, stats = self._timers, self.rng, self.stats
        self._gossip = Gossip(config, table, timers, rng, stats, self._outbox, now, packet_overhead)
        self._suspicions = SuspicionTracker(
            config, table, timers, on_expire=self._suspicion_expired, on_nudge=self._nudge
        )
        self._prober = Prober(
            self, config, table, self._gossip, timers, rng, self._awareness, stats
        )
        self._anti_entropy = ae = AntiEntropy(self, config, table, timers, rng, stats)
        self._streams: dict[int, tuple[StreamPurpose, Address]] = {}
        self._seq = 0
        self._reasserted: dict[Address, float] = {}

        timers.schedule(now + rng.uniform(0, config.probe_interval), self._prober.tick)
        # A formed start's nodes are at a random phase of their (size-scaled) exchange period,
        # as in a mesh formed long ago; a joining node (live == 1) starts unscaled.
        first_exchange = push_pull_scale(config.push_pull_interval, table.live)
        timers.schedule(now + rng.uniform(0, first_exchange), ae.push_pull_tick)
        timers.schedule(now + config.reconnect_interval * rng.uniform(0.5, 1.5), ae.reconnect_tick)

    # -- queries ---------------------------------------------------------------------------

    @property
    def health_score(self) -> int:
        """Lifeguard's Local Health Multiplier minus one (0 is healthy)."""
        return self._awareness.score

    @property
    def broadcast_depth(self) -> int:
        return len(self._gossip.queue)

    @property
    def broadcasts_dropped(self) -> int:
        """Broadcasts a full queue pushed out before they reached their retransmit limit."""
        return self._gossip.queue.dropped

    def members(self) -> list[Member]:
        return self._table.members()

    def member(self, name: str) -> Member | None:
        return self._table.view_of(name)

    def local_member(self) -> Member:
        return self._table[self.name].view()

    def live_count(self) -> int:
        """ALIVE and SUSPECT members, this node included."""
        return self._table.live

    def retransmit_limit(self) -> int:
        """How many times a broadcast is sent before it retires (see :class:`Gossip`)."""
        return self._gossip.retransmit_limit()

    def status_of(self, name: str) -> MemberStatus | None:
        """The status of ``name`` without building a view (cheap, for polling)."""
        return self._table.status_of(name)

    def suspicion_bounds(self) -> tuple[float, float]:
        """Current ``(min, max)`` suspicion timeouts for this node's view of the cluster."""
        return self._suspicions.bounds()

    def pending_broadcast(self, key: Hashable) -> bool:
        return key in self._gossip.queue

    # -- driver interface ------------------------------------------------------------------

    def next_deadline(self) -> float:
        """The earliest time a timer is due (``inf`` if none)."""
        return self._timers.next_deadline()

    def tick(self, now: float) -> None:
        """Run every timer due at or before ``now``."""
        self._timers.run_due(now)

    def drain(self) -> list[Output]:
        """Every output since the last drain, in order; the outbox is left empty."""
        out = list(self._outbox)
        self._outbox.clear()
        return out

    def receive_datagram(self, source: Address, data: bytes, now: float) -> None:
        """Decode and handle one datagram; malformed input is counted and dropped."""
        self.stats.packets_received += 1
        self.stats.bytes_received += len(data)
        try:
            messages = codec.decode_packet(data, self.config.cluster_label)
        except codec.DecodeError as exc:
            self.stats.packets_dropped += 1
            self.stats.dropped[exc.reason] += 1
            log.debug(
                "dropped datagram", extra={"node": self.name, "peer": source, "reason": exc.reason}
            )
            return
        self.stats.packets_accepted += 1
        self.receive_messages(source, messages, now)

    def receive_messages(self, source: Address, messages: list[PacketMessage], now: float) -> None:
        for msg in messages:
            self.stats.messages_received += 1
            match msg:
                case ClaimMessage(claim):
                    self.apply_claim(claim, now, source=source)
                case Ping():
                    self._on_ping(source, msg, now)
                case Ack(seq):
                    self._prober.on_ack(source, seq, now)
                case Nack(seq):
                    self._prober.on_nack(seq)
                case PingReq():
                    self._prober.on_ping_req(source, msg, now)
                case UserMessage(kind, payload, key):
                    if key and not self._gossip.first_sighting(kind, key, payload, now):
                        continue
                    self._outbox.append(DeliverUser(kind, payload, source))

    def handle_stream_request(
        self, source: Address, msg: StreamMessage, now: float
    ) -> StreamMessage | None:
        """Answer a stream request the core owns (push-pull); None for anything else."""
        if isinstance(msg, PushPull):
            self.merge_remote_state(msg, now, source)
            return self.push_pull_message(join=False)
        if isinstance(msg, StreamPing) and msg.target == self.name:
            return msg  # the echo is the ack
        return None

    def stream_reply(self, request_id: int, reply: StreamMessage | None, now: float) -> None:
        """Report the outcome of a :class:`StartStream` (``None`` for failure or timeout)."""
        entry = self._streams.pop(request_id, None)
        if entry is None:
            return
        purpose, address = entry
        if purpose is StreamPurpose.PUSH_PULL:
            self._anti_entropy.active -= 1
        if purpose is StreamPurpose.FALLBACK_PING:
            self._prober.on_stream_ping(request_id, isinstance(reply, StreamPing))
            return
        if isinstance(reply, PushPull):
            self.merge_remote_state(reply, now, address, initiator=True)
        else:
            self.stats.push_pull_failures += 1

    # -- what the prober asks of its host --------------------------------------------------

    def next_seq(self) -> int:
        """A fresh sequence number (probes, relays and stream requests share the space)."""
        self._seq = (self._seq + 1) & 0xFFFF_FFFF
        return self._seq

    def open_stream(
        self,
        address: Address,
        message: StreamMessage,
        purpose: StreamPurpose,
        timeout: float,
        request_id: int | None = None,
    ) -> None:
        """Ask the driver for a stream request; its reply comes back to ``stream_reply``."""
        if request_id is None:
            request_id = self.next_seq()
        self._streams[request_id] = (purpose, address)
        self._outbox.append(StartStream(request_id, address, message, timeout))

    def forget_stream(self, request_id: int) -> None:
        self._streams.pop(request_id, None)

    def probe_failed(self, target: str, now: float) -> None:
        state = self._table.get(target)
        if state is None or state.status not in (_ALIVE, _SUSPECT) or self.leaving:
            return
        self.apply_claim(claim_about(state, _SUSPECT, self.name), now)

    # -- push-pull and join ----------------------------------------------------------------

    def push_pull_message(self, join: bool) -> PushPull:
        """This node's whole table, for a push-pull exchange."""
        return self._anti_entropy.message(join)

    def merge_remote_state(
        self, msg: PushPull, now: float, peer: Address, *, initiator: bool = False
    ) -> None:
        """Merge the full state of the peer at ``peer`` (see :meth:`AntiEntropy.merge`)."""
        self._anti_entropy.merge(msg, now, peer, initiator=initiator)

    @property
    def seeds(self) -> list[Address]:
        return self._anti_entropy.seeds

    def start_join(self, seeds: list[Address]) -> None:
        """Remember the seeds so reconnection can retry them after a partition."""
        self._anti_entropy.add_seeds(seeds)

    def joined(self, now: float) -> None:
        """After a join, settle with two extra push-pulls with random peers (after 1 and 5
        probe intervals) so a claim missed in the join storm is repaired in seconds rather than
        at the next full anti-entropy round."""
        self._anti_entropy.joined(now)

    # -- local changes ---------------------------------------------------------------------

    def update_metadata(self, metadata: Mapping[str, str], now: float) -> None:
        _check_metadata(metadata, self.config.max_metadata_bytes)
        self.metadata = dict(metadata)
        self.meta_version += 1
        self.incarnation += 1
        self._publish_self(now)

    def leave(self, now: float) -> Hashable:
        """Announce a graceful departure; returns the broadcast key to watch for retirement."""
        self.leaving = True
        claim = Claim(self.name, self.incarnation, _LEFT, self.address)
        self._table[self.name].merge(claim, now)
        encoded = self._gossip.put_claim(claim, now)
        # Tell every live peer directly: a leave must never look like a failure.
        for name in list(self._table.gossip):
            state = self._table[name]
            if state.status is not _DEAD:
                self._gossip.send(state.address, [encoded])
        return claim_key(self.name)

    def broadcast_user(self, kind: str, payload: bytes, key: str | None, now: float) -> None:
        """Gossip an overlay message to every node; a newer payload under the same key
        replaces the queued one. Receivers deliver each distinct payload once and re-gossip it."""
        self._gossip.broadcast_user(kind, payload, key, now)

    def send_user(self, address: Address, kind: str, payload: bytes) -> None:
        """One overlay datagram to ``address``; raises :class:`MessageTooLarge` rather than put
        more than ``udp_buffer_size`` on the wire."""
        encoded = codec.encode_message(UserMessage(kind, payload))
        if len(encoded) > self._gossip.budget:
            raise MessageTooLarge(
                f"overlay message {kind!r} is {len(encoded)} bytes encoded and a datagram holds "
                f"{self._gossip.budget} (udp_buffer_size {self.config.udp_buffer_size} less the "
                "envelope and seal): send it over the stream channel"
            )
        self._gossip.send(address, [encoded])

    # -- claims ----------------------------------------------------------------------------

    def _self_claim(self) -> Claim:
        return Claim(
            self.name, self.incarnation, _ALIVE, self.address, self.meta_version, self.metadata
        )

    def _publish_self(self, now: float) -> None:
        claim = self._self_claim()
        self._table.set_local(MemberState.from_claim(claim, now))
        self._gossip.put_claim(claim, now)

    def _reassert(self, address: Address, now: float) -> None:
        """A peer still repeats a suspicion we already refuted (it missed the refutation):
        tell it our current incarnation directly, at most once per probe interval."""
        if self._reasserted.get(address, -math.inf) > now:
            return
        if len(self._reasserted) > _REASSERT_MEMORY:
            self._reasserted = {a: t for a, t in self._reasserted.items() if t > now}
        self._reasserted[address] = now + self.config.probe_interval
        self._gossip.send(address, [codec.encode_message(ClaimMessage(self._self_claim()))])

    def apply_claim(
        self, claim: Claim, now: float, rebroadcast: bool = True, source: Address | None = None
    ) -> None:
        """The one path of every claim (see the module docstring); ``source`` is the address
        it came from, if it came in a packet."""
        if claim.name == self.name:
            self._claim_about_self(claim, now, source)
            return
        if self._apply(claim, now) and rebroadcast:
            self._gossip.put_claim(claim, now)

    def _claim_about_self(self, claim: Claim, now: float, source: Address | None) -> None:
        if self.leaving:
            return
        if claim.incarnation < self.incarnation:
            if claim.status is not _ALIVE and source is not None:
                self._reassert(source, now)
            return
        if claim.status is _ALIVE:
            me = self._table[self.name]
            if claim.incarnation == self.incarnation and claim.identity_key() == me.identity:
                return
            log.warning(
                "another process claims this node's name; refuting",
                extra={"node": self.name, "claimed_address": claim.address},
            )
        elif self.config.lifeguard:
            self._awareness.apply(1)
        self.incarnation = claim.incarnation + 1
        self.stats.refutations += 1
        log.debug(
            "refuting claim about self",
            extra={
                "node": self.name,
                "status": claim.status.label,
                "incarnation": self.incarnation,
            },
        )
        self._publish_self(now)

    def _apply(self, claim: Claim, now: float) -> bool:
        """Fold a claim about a peer into the table; True if it told us something new."""
        state = self._table.peek(claim.name)
        if state is None:
            if claim.status is not _ALIVE:
                # As memberlist: only an alive claim introduces a member. Otherwise a reaped
                # tombstone would be re-created by any peer that has not reaped it yet, and
                # tombstones would circulate forever.
                return False
            state = self._table.introduce(claim, now)
            self._emit(MemberEventKind.JOIN, state)
            self._status_changed(state, None, claim, now)
            return True
        old_status, old_incarnation = state.status, state.incarnation
        state, status_changed, identity_changed = self._table.merge(state, claim, now)
        if status_changed:
            self._status_changed(state, old_status, claim, now)
        elif state.status is _SUSPECT and claim.status is _SUSPECT:
            if state.incarnation != old_incarnation:
                self._start_suspicion(state, claim.source, now)
                return True
            if claim.incarnation == state.incarnation:
                return self._suspicions.confirm(state.name, claim.source, now)
        if identity_changed and not status_changed and state.status is _ALIVE:
            self._emit(MemberEventKind.UPDATE, state)
        return status_changed or identity_changed or state.incarnation != old_incarnation

    def _status_changed(
        self, state: MemberState, old: MemberStatus | None, claim: Claim, now: float
    ) -> None:
        """The consequences of a status transition the table has already booked: the
        suspicion timer, the membership event, and the reaping of a tombstone."""
        name, new = state.name, state.status
        if new is not _SUSPECT:
            self._suspicions.cancel(name)
        if new is _ALIVE:
            if old is _SUSPECT:
                self._emit(MemberEventKind.ALIVE, state)
            elif old is not None:
                self._emit(MemberEventKind.JOIN, state)
        elif new is _SUSPECT:
            if old in (_DEAD, _LEFT):
                self._emit(MemberEventKind.JOIN, state)
            self._start_suspicion(state, claim.source, now)
            self._emit(MemberEventKind.SUSPECT, state)
        else:
            if old is not None:
                kind = MemberEventKind.DEAD if new is _DEAD else MemberEventKind.LEAVE
                self._emit(kind, state)
            self._timers.schedule(
                now + self.config.gossip_to_the_dead, self._reaper(name, state.last_change)
            )

    def _emit(self, kind: MemberEventKind, state: MemberState) -> None:
        self._outbox.append(EmitEvent(MemberEvent(kind, state.view())))

    def _reaper(self, name: str, since: float) -> TimerCallback:
        """Reap ``name`` if it is still the tombstone it was at ``since`` (any later change
        scheduled a reaper of its own)."""

        def reap(now: float) -> None:
            if self._table.reap(name, since):
                self.stats.rtt.pop(name, None)

        return reap

    # -- suspicion -------------------------------------------------------------------------

    def _start_suspicion(self, state: MemberState, source: str, now: float) -> None:
        self._suspicions.start(state, source, now)
        self.stats.suspicions += 1
        log.debug(
            "member suspected",
            extra={"node": self.name, "member": state.name, "incarnation": state.incarnation},
        )

    def _suspicion_expired(self, state: MemberState, now: float) -> None:
        self.stats.deaths_declared += 1
        log.info(
            "member declared dead",
            extra={"node": self.name, "member": state.name, "incarnation": state.incarnation},
        )
        self.apply_claim(claim_about(state, _DEAD, self.name), now)

    def _nudge(self, state: MemberState, now: float) -> None:
        """Lifeguard's last call to a suspect (see :class:`SuspicionTracker`); a live one
        answers with its current incarnation at once (``_reassert``)."""
        buddy = claim_about(state, _SUSPECT, self.name)
        self._gossip.send(state.address, [codec.encode_message(ClaimMessage(buddy))])

    # -- pings -----------------------------------------------------------------------------

    def _on_ping(self, source: Address, ping: Ping, now: float) -> None:
        if ping.target != self.name:
            self.stats.dropped["misdirected"] += 1
            return
        self._gossip.send(source, [codec.encode_message(Ack(ping.seq))])
        if ping.source not in self._table:
            self._anti_entropy.unknown_prober(ping.source, source, now)


def _check_metadata(metadata: Mapping[str, str], limit: int) -> None:
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"metadata keys and values must be strings, got {k!r}: {v!r}")
    size = codec.metadata_size(metadata)
    if size > limit:
        raise MetadataTooLarge(
            f"metadata encodes to {size} bytes, above max_metadata_bytes={limit}"
        )
