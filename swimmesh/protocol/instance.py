"""The SWIM + Lifeguard state machine, free of I/O and of any clock of its own.

Feed it inputs (a datagram from an address, a stream request or reply, "time is now T") and
drain its outputs (packets to send, streams to open, events). The driver sleeps until
``next_deadline()`` and then calls ``tick(now)``. Everything random comes from the ``rng`` it
was given, so a run with the same seed and the same inputs is the same run.
"""

from __future__ import annotations

import bisect
import logging
import math
import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Mapping

import attrs

from .. import codec
from ..config import MeshConfig
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
from .awareness import Awareness
from .broadcasts import BroadcastQueue
from .outputs import DeliverUser, EmitEvent, Output, SendPacket, StartStream
from .probing import ProbeOrder
from .sampling import SampleSet
from .suspicion import Suspicion, suspicion_bounds
from .timers import Timer, TimerQueue

log = logging.getLogger("swimmesh.protocol")

_ALIVE, _SUSPECT, _DEAD, _LEFT = (
    MemberStatus.ALIVE,
    MemberStatus.SUSPECT,
    MemberStatus.DEAD,
    MemberStatus.LEFT,
)
_NACK_FRACTION = 0.8
_SEEN_USER_LIMIT = 4096

TimerCallback = Callable[[float], None]


class MetadataTooLarge(ValueError):
    """Local metadata whose encoded size exceeds ``max_metadata_bytes``."""


@attrs.define(slots=True, eq=False)
class _Probe:
    target: str
    seq: int
    sent: float
    deadline: float
    acked: bool = False
    nacks: int = 0
    expected_nacks: int = 0
    stream_ok: bool = False
    timeout_timer: Timer | None = None
    end_timer: Timer | None = None


@attrs.define(slots=True, eq=False)
class _Relay:
    """A ping we send on behalf of a peer's ping-req."""

    requester: Address
    seq: int
    acked: bool = False


RTT_BUCKETS_MS = (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)


@attrs.define(slots=True)
class RttHistogram:
    """Direct-probe round trips to one peer, bucketed as ``RTT_BUCKETS_MS`` (cumulative at
    export time); plain counters so the core stays free of any metrics library."""

    counts: list[int] = attrs.field(factory=lambda: [0] * (len(RTT_BUCKETS_MS) + 1))
    total_ms: float = 0.0

    def observe(self, rtt_ms: float) -> None:
        self.counts[bisect.bisect_left(RTT_BUCKETS_MS, rtt_ms)] += 1
        self.total_ms += rtt_ms


@attrs.define(slots=True)
class Stats:
    """Counters the driver exports as metrics."""

    probes: int = 0
    probe_failures: int = 0
    indirect_probes: int = 0
    suspicions: int = 0
    refutations: int = 0
    deaths_declared: int = 0
    push_pulls: int = 0
    push_pull_failures: int = 0
    reconnect_attempts: int = 0
    repairs: int = 0
    stream_fallbacks: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    packets_accepted: int = 0
    """Datagrams that decoded (their messages may still be dropped one by one)."""
    packets_dropped: int = 0
    """Datagrams refused whole: undecodable, wrong version or label, oversize."""
    bytes_sent: int = 0
    bytes_received: int = 0
    messages_received: int = 0
    dropped: Counter[str] = attrs.field(factory=Counter)
    rtt: dict[str, RttHistogram] = attrs.field(factory=dict)


def push_pull_scale(interval: float, n: int) -> float:
    """memberlist's push-pull interval scaling: one more multiple per doubling above 32."""
    if n <= 32:
        return interval
    return interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)


class SwimInstance:
    """One node's view of the mesh and its SWIM machinery."""

    def __init__(
        self,
        config: MeshConfig,
        now: float,
        rng: random.Random | None = None,
        *,
        packet_overhead: int = 0,
    ) -> None:
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
        self.seeds: list[Address] = []

        self._label = config.cluster_label
        self._budget = (
            config.udp_buffer_size - codec.packet_header_size(self._label) - packet_overhead
        )
        self._table: dict[str, MemberState] = {}
        self._alive = SampleSet()  # ALIVE peers (not self): relays, push-pull partners
        self._gossip = SampleSet()  # ALIVE, SUSPECT and recently DEAD peers: gossip targets
        self._live = 1  # ALIVE + SUSPECT members including self
        self._probes = ProbeOrder(self.rng)
        self._suspicions: dict[str, tuple[Suspicion, list[Timer]]] = {}
        self._awareness = Awareness(config.awareness_max)
        self._broadcasts = BroadcastQueue()
        self._timers = TimerQueue()
        self._handlers: dict[int, _Probe | _Relay] = {}
        self._streams: dict[int, tuple[str, Address]] = {}
        self._failed: dict[str, tuple[Address, float]] = {}
        self._outbox: list[Output] = []
        self._seq = 0
        self._gossip_timer: Timer | None = None
        self._gossip_phase = now + self.rng.uniform(0, config.gossip_interval)
        self._active_push_pulls = 0
        self._next_repair = -math.inf
        self._reasserted: dict[Address, float] = {}
        self.ack_listener: Callable[[str], None] | None = None
        """Called with a member's name on every ack from it (overlays record heartbeats)."""
        self._seen_user: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._user_seq = 0

        self._table[self.name] = MemberState.from_claim(self._self_claim(), now)
        self._timers.schedule(now + self.rng.uniform(0, config.probe_interval), self._probe_tick)
        self._timers.schedule(
            now + self.rng.uniform(0, config.push_pull_interval), self._push_pull_tick
        )
        self._timers.schedule(
            now + config.reconnect_interval * self.rng.uniform(0.5, 1.5), self._reconnect_tick
        )

    # -- queries ---------------------------------------------------------------------------

    @property
    def health_score(self) -> int:
        """Lifeguard's Local Health Multiplier minus one (0 is healthy)."""
        return self._awareness.score

    @property
    def broadcast_depth(self) -> int:
        return len(self._broadcasts)

    @property
    def broadcasts_dropped(self) -> int:
        """Broadcasts a full queue pushed out before they reached their retransmit limit."""
        return self._broadcasts.dropped

    def members(self) -> list[Member]:
        return [s.view() for s in self._table.values()]

    def member(self, name: str) -> Member | None:
        state = self._table.get(name)
        return None if state is None else state.view()

    def local_member(self) -> Member:
        return self._table[self.name].view()

    def live_count(self) -> int:
        """ALIVE and SUSPECT members, this node included."""
        return self._live

    def retransmit_limit(self) -> int:
        """memberlist's ``mult * ceil(log10(n + 1))``, but never below ``2 * mult``: during a
        join storm a claim queued while the mesh was tiny would otherwise retire after a handful
        of sends and miss the nodes that join meanwhile (Serf's join tail)."""
        mult = self.config.retransmit_mult
        return mult * max(2, math.ceil(math.log10(self._live + 1)))

    def status_of(self, name: str) -> MemberStatus | None:
        """The status of ``name`` without building a view (cheap, for polling)."""
        state = self._table.get(name)
        return None if state is None else state.status

    def suspicion_bounds(self) -> tuple[float, float]:
        """Current ``(min, max)`` suspicion timeouts for this node's view of the cluster."""
        c = self.config
        return suspicion_bounds(
            c.suspicion_mult, c.suspicion_max_timeout_mult, self._live, c.probe_interval
        )

    def pending_broadcast(self, key: Hashable) -> bool:
        return key in self._broadcasts

    # -- driver interface ------------------------------------------------------------------

    def next_deadline(self) -> float:
        return self._timers.next_deadline()

    def tick(self, now: float) -> None:
        self._timers.run_due(now)

    def drain(self) -> list[Output]:
        out, self._outbox = self._outbox, []
        return out

    def receive_datagram(self, source: Address, data: bytes, now: float) -> None:
        """Decode and handle one datagram; malformed input is counted and dropped."""
        self.stats.packets_received += 1
        self.stats.bytes_received += len(data)
        try:
            messages = codec.decode_packet(data, self._label)
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
                    self._on_claim(claim, now, source=source)
                case Ping():
                    self._on_ping(source, msg, now)
                case Ack(seq):
                    self._on_ack(source, seq, now)
                case Nack(seq):
                    handler = self._handlers.get(seq)
                    if isinstance(handler, _Probe):
                        handler.nacks += 1
                case PingReq():
                    self._on_ping_req(source, msg, now)
                case UserMessage(kind, payload, key):
                    if key and not self._first_sighting(kind, key, payload, now):
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
        if purpose == "push-pull":
            self._active_push_pulls -= 1
        if purpose == "fallback-ping":
            probe = self._handlers.get(request_id)
            if isinstance(probe, _Probe) and isinstance(reply, StreamPing):
                probe.stream_ok = True
            return
        if isinstance(reply, PushPull):
            self.merge_remote_state(reply, now, address, initiator=True)
        else:
            self.stats.push_pull_failures += 1

    # -- push-pull and join ----------------------------------------------------------------

    def push_pull_message(self, join: bool) -> PushPull:
        self.stats.push_pulls += 1
        states = self._table.values()
        return PushPull(
            join=join,
            states=tuple(s.to_claim() for s in states),
            encoded=tuple(s.encoded() for s in states),
        )

    def merge_remote_state(
        self, msg: PushPull, now: float, peer: Address, *, initiator: bool = False
    ) -> None:
        """Merge the full state of the peer at ``peer``. A remote DEAD becomes a local SUSPECT
        (the member gets a chance to refute). What is new here is re-gossiped, except when this
        node asked for the exchange knowing nobody yet: a fresh joiner would only echo back
        what the mesh already knows."""
        fresh = initiator and len(self._table) <= 1
        source = "push-pull@" + ":".join(map(str, peer))
        for claim in msg.states:
            if claim.status in (_SUSPECT, _DEAD) and claim.name != self.name:
                claim = attrs.evolve(claim, status=_SUSPECT, source=source)
            known = claim.name in self._table
            self._on_claim(claim, now, rebroadcast=known or not fresh)

    def start_join(self, seeds: list[Address]) -> None:
        """Remember the seeds so reconnection can retry them after a partition."""
        for seed in seeds:
            if seed not in self.seeds:
                self.seeds.append(seed)

    def joined(self, now: float) -> None:
        """After a join, settle with two extra push-pulls with random peers (after 1 and 5
        probe intervals) so a claim missed in the join storm is repaired in seconds rather than
        at the next full anti-entropy round."""
        for intervals in (1, 5):
            delay = intervals * self.config.probe_interval * self.rng.uniform(1.0, 1.5)
            if delay < self.config.push_pull_interval:
                self._timers.schedule(now + delay, self._settle_tick)

    def _settle_tick(self, now: float) -> None:
        if self.leaving:
            return
        partner = self._alive.sample(self.rng, 1)
        if partner:
            address = self._table[partner[0]].address
            self._start_stream(address, self.push_pull_message(join=False), "settle")

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
        encoded = codec.encode_message(ClaimMessage(claim))
        self._broadcasts.queue(("m", self.name), encoded)
        # Tell every live peer directly: a leave must never look like a failure.
        for name in list(self._gossip):
            state = self._table[name]
            if state.status is not _DEAD:
                self._send(state.address, [encoded])
        self._arm_gossip(now)
        return ("m", self.name)

    def broadcast_user(self, kind: str, payload: bytes, key: str | None, now: float) -> None:
        """Gossip an overlay message to every node; a newer payload under the same key
        replaces the queued one. Receivers deliver each distinct payload once and re-gossip it."""
        if key is None:
            self._user_seq += 1
            key = f"{self.name}/{self._user_seq}"
        self._seen_user[(kind, key)] = payload
        self._broadcasts.queue(
            ("u", kind, key), codec.encode_message(UserMessage(kind, payload, key))
        )
        self._arm_gossip(now)

    def _first_sighting(self, kind: str, key: str, payload: bytes, now: float) -> bool:
        """Remember a broadcast; True (and re-gossip it) the first time this payload is seen."""
        seen = self._seen_user
        if seen.get((kind, key)) == payload:
            return False
        seen[(kind, key)] = payload
        seen.move_to_end((kind, key))
        if len(seen) > _SEEN_USER_LIMIT:
            seen.popitem(last=False)
        self._broadcasts.queue(
            ("u", kind, key), codec.encode_message(UserMessage(kind, payload, key))
        )
        self._arm_gossip(now)
        return True

    def send_user(self, address: Address, kind: str, payload: bytes) -> None:
        self._send(address, [codec.encode_message(UserMessage(kind, payload))])

    # -- claims ----------------------------------------------------------------------------

    def _self_claim(self) -> Claim:
        return Claim(
            self.name, self.incarnation, _ALIVE, self.address, self.meta_version, self.metadata
        )

    def _publish_self(self, now: float) -> None:
        claim = self._self_claim()
        state = MemberState.from_claim(claim, now)
        self._table[self.name] = state
        self._queue_claim(claim, now)

    def _reassert(self, address: Address, now: float) -> None:
        """A peer still repeats a suspicion we already refuted (it missed the refutation):
        tell it our current incarnation directly, at most once per probe interval."""
        if self._reasserted.get(address, -math.inf) > now:
            return
        if len(self._reasserted) > 4096:
            self._reasserted = {a: t for a, t in self._reasserted.items() if t > now}
        self._reasserted[address] = now + self.config.probe_interval
        self._send(address, [codec.encode_message(ClaimMessage(self._self_claim()))])

    def _queue_claim(self, claim: Claim, now: float) -> None:
        self._broadcasts.queue(("m", claim.name), codec.encode_message(ClaimMessage(claim)))
        self._arm_gossip(now)

    def _on_claim(
        self, claim: Claim, now: float, rebroadcast: bool = True, source: Address | None = None
    ) -> None:
        if claim.name == self.name:
            self._claim_about_self(claim, now, source)
            return
        if self._apply(claim, now) and rebroadcast:
            self._queue_claim(claim, now)

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
        state = self._table.get(claim.name)
        if state is None:
            if claim.status is not _ALIVE:
                # As memberlist: only an alive claim introduces a member. Otherwise a reaped
                # tombstone would be re-created by any peer that has not reaped it yet, and
                # tombstones would circulate forever.
                return False
            state = MemberState.from_claim(claim, now)
            self._table[claim.name] = state
            self._emit(MemberEventKind.JOIN, state)
            self._status_changed(state, None, claim, now)
            return True
        old_status, old_incarnation = state.status, state.incarnation
        status_changed, identity_changed = state.merge(claim, now)
        if status_changed:
            self._status_changed(state, old_status, claim, now)
        elif state.status is _SUSPECT and claim.status is _SUSPECT:
            if state.incarnation != old_incarnation:
                self._start_suspicion(state, claim.source, now)
                return True
            if claim.incarnation == state.incarnation:
                return self._confirm(state, claim.source, now)
        if identity_changed and not status_changed and state.status is _ALIVE:
            self._emit(MemberEventKind.UPDATE, state)
        return status_changed or identity_changed or state.incarnation != old_incarnation

    def _status_changed(
        self, state: MemberState, old: MemberStatus | None, claim: Claim, now: float
    ) -> None:
        name, new = state.name, state.status
        was_live = old in (_ALIVE, _SUSPECT)
        is_live = new in (_ALIVE, _SUSPECT)
        self._live += int(is_live) - int(was_live)
        if new is not _SUSPECT:
            self._cancel_suspicion(name)
        if new is _ALIVE:
            self._alive.add(name)
            self._gossip.add(name)
            self._probes.add(name)
            self._failed.pop(name, None)
            if old is _SUSPECT:
                self._emit(MemberEventKind.ALIVE, state)
            elif old is not None:
                self._emit(MemberEventKind.JOIN, state)
        elif new is _SUSPECT:
            self._alive.discard(name)
            self._gossip.add(name)
            self._probes.add(name)
            self._failed.pop(name, None)
            if old in (_DEAD, _LEFT):
                self._emit(MemberEventKind.JOIN, state)
            self._start_suspicion(state, claim.source, now)
            self._emit(MemberEventKind.SUSPECT, state)
        else:
            self._alive.discard(name)
            self._probes.remove(name)
            if new is _DEAD:
                self._gossip.add(name)
                if old is not None:
                    self._failed[name] = (state.address, now)
                    self._emit(MemberEventKind.DEAD, state)
            else:
                self._gossip.discard(name)
                self._failed.pop(name, None)
                if old is not None:
                    self._emit(MemberEventKind.LEAVE, state)
            self._timers.schedule(
                now + self.config.gossip_to_the_dead, self._reaper(name, state.last_change)
            )

    def _emit(self, kind: MemberEventKind, state: MemberState) -> None:
        self._outbox.append(EmitEvent(MemberEvent(kind, state.view())))

    def _reaper(self, name: str, since: float) -> TimerCallback:
        """Reap ``name`` if it is still the tombstone it was at ``since`` (any later change
        scheduled a reaper of its own)."""

        def reap(now: float) -> None:
            state = self._table.get(name)
            if state is not None and state.status in (_DEAD, _LEFT) and state.last_change == since:
                del self._table[name]
                self._gossip.discard(name)
                self.stats.rtt.pop(name, None)

        return reap

    # -- suspicion -------------------------------------------------------------------------

    def _start_suspicion(self, state: MemberState, source: str, now: float) -> None:
        self._cancel_suspicion(state.name)
        c = self.config
        minimum, maximum = self.suspicion_bounds()
        k = c.suspicion_mult - 2
        if not c.lifeguard or self._live - 2 < k:
            k = 0
        suspicion = Suspicion(now, state.incarnation, source or "?", k, minimum, maximum)
        self._suspicions[state.name] = (
            suspicion,
            self._suspicion_timers(state.name, suspicion, now),
        )
        self.stats.suspicions += 1
        log.debug(
            "member suspected",
            extra={"node": self.name, "member": state.name, "incarnation": state.incarnation},
        )

    def _confirm(self, state: MemberState, source: str, now: float) -> bool:
        entry = self._suspicions.get(state.name)
        if entry is None or not entry[0].confirm(source):
            return False
        suspicion, timers = entry
        for timer in timers:
            timer.cancel()
        self._suspicions[state.name] = (
            suspicion,
            self._suspicion_timers(state.name, suspicion, now),
        )
        return True

    def _suspicion_timers(self, name: str, suspicion: Suspicion, now: float) -> list[Timer]:
        """The expiry timer, and (with Lifeguard) two "last call" buddy nudges before it.

        Epidemic gossip leaves a small chance (about e^-7 per node here) that one node misses
        a refutation; if that node holds the suspicion it would run to its end and declare a
        live node dead. So the suspecter tells the suspect directly, twice, shortly before the
        deadline: a live suspect answers with its current incarnation at once (see
        ``_reassert``); a dead one costs two packets."""
        deadline = max(suspicion.deadline(), now)
        timers = [self._timers.schedule(deadline, self._suspicion_expiry(name))]
        if self.config.lifeguard:
            c = self.config
            for lead in (2 * c.probe_interval, c.probe_timeout):
                at = deadline - lead
                if at > now:
                    timers.append(self._timers.schedule(at, self._nudge(name, suspicion)))
        return timers

    def _nudge(self, name: str, suspicion: Suspicion) -> TimerCallback:
        def nudge(now: float) -> None:
            state = self._table.get(name)
            if (
                state is None
                or state.status is not _SUSPECT
                or state.incarnation != suspicion.incarnation
            ):
                return
            claim = Claim(name, state.incarnation, _SUSPECT, state.address, source=self.name)
            self._send(state.address, [codec.encode_message(ClaimMessage(claim))])

        return nudge

    def _cancel_suspicion(self, name: str) -> None:
        entry = self._suspicions.pop(name, None)
        if entry is not None:
            for timer in entry[1]:
                timer.cancel()

    def _suspicion_expiry(self, name: str) -> TimerCallback:
        def expire(now: float) -> None:
            entry = self._suspicions.pop(name, None)
            state = self._table.get(name)
            if entry is None or state is None or state.status is not _SUSPECT:
                return
            if state.incarnation != entry[0].incarnation:
                return
            self.stats.deaths_declared += 1
            log.info(
                "member declared dead",
                extra={"node": self.name, "member": name, "incarnation": state.incarnation},
            )
            claim = Claim(name, state.incarnation, _DEAD, state.address, source=self.name)
            self._on_claim(claim, now)

        return expire

    # -- probing ---------------------------------------------------------------------------

    def _probe_eligible(self, name: str) -> bool:
        state = self._table.get(name)
        return state is not None and state.status in (_ALIVE, _SUSPECT)

    def _scaled(self, value: float) -> float:
        return self._awareness.scale(value) if self.config.lifeguard else value

    def _probe_tick(self, now: float) -> None:
        interval = self._scaled(self.config.probe_interval)
        self._timers.schedule(now + interval, self._probe_tick)
        if self.leaving:
            return
        target, _ = self._probes.next(self._probe_eligible)
        if target is not None:
            self._probe(target, now, interval)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF_FFFF
        return self._seq

    def _probe(self, target: str, now: float, interval: float) -> None:
        state = self._table[target]
        seq = self._next_seq()
        probe = _Probe(target, seq, sent=now, deadline=now + interval)
        self._handlers[seq] = probe
        msgs = [codec.encode_message(Ping(seq, target, self.name))]
        if state.status is _SUSPECT and self.config.lifeguard:
            # Buddy system: tell the suspect directly so it can refute at once.
            buddy = Claim(target, state.incarnation, _SUSPECT, state.address, source=self.name)
            msgs.append(codec.encode_message(ClaimMessage(buddy)))
        self._send(state.address, msgs)
        self.stats.probes += 1
        timeout = self._scaled(self.config.probe_timeout)
        probe.timeout_timer = self._timers.schedule(now + timeout, self._probe_timeout(probe))
        probe.end_timer = self._timers.schedule(now + interval, self._probe_end(probe))

    def _probe_timeout(self, probe: _Probe) -> TimerCallback:
        def on_timeout(now: float) -> None:
            if probe.acked:
                return
            state = self._table.get(probe.target)
            if state is None or state.status not in (_ALIVE, _SUSPECT):
                return
            relays = self._alive.sample(self.rng, self.config.indirect_checks, exclude=probe.target)
            nack = self.config.lifeguard
            msg = codec.encode_message(
                PingReq(probe.seq, probe.target, state.address, self.name, nack)
            )
            for relay in relays:
                self._send(self._table[relay].address, [msg])
            self.stats.indirect_probes += len(relays)
            if nack:
                probe.expected_nacks = len(relays)
            if self.config.stream_fallback:
                # memberlist's TCP ping: alongside the relays, ask over the stream channel.
                self._streams[probe.seq] = ("fallback-ping", state.address)
                remaining = max(probe.deadline - now, 0.0)
                self._outbox.append(
                    StartStream(
                        probe.seq, state.address, StreamPing(probe.seq, probe.target), remaining
                    )
                )

        return on_timeout

    def _probe_end(self, probe: _Probe) -> TimerCallback:
        def on_end(now: float) -> None:
            if self._handlers.get(probe.seq) is probe:
                del self._handlers[probe.seq]
            self._streams.pop(probe.seq, None)
            if probe.acked:
                return
            if probe.stream_ok:
                self.stats.stream_fallbacks += 1
                log.warning(
                    "peer answered over the stream channel but not over UDP (UDP blocked?)",
                    extra={"node": self.name, "peer": probe.target},
                )
                return
            self.stats.probe_failures += 1
            if self.config.lifeguard:
                missed = probe.expected_nacks - probe.nacks
                self._awareness.apply(missed if probe.expected_nacks > 0 else 1)
            state = self._table.get(probe.target)
            if state is None or state.status not in (_ALIVE, _SUSPECT) or self.leaving:
                return
            claim = Claim(
                probe.target, state.incarnation, _SUSPECT, state.address, source=self.name
            )
            self._on_claim(claim, now)

        return on_end

    def _on_ping(self, source: Address, ping: Ping, now: float) -> None:
        if ping.target != self.name:
            self.stats.dropped["misdirected"] += 1
            return
        self._send(source, [codec.encode_message(Ack(ping.seq))])
        if ping.source not in self._table and now >= self._next_repair:
            # A peer we do not know probes us. Its alive claim may still be on its way (a join
            # storm); if it is still unknown one probe interval later we missed it, and likely
            # others: pull the peer's whole table. At most one repair per probe interval.
            self._next_repair = now + self.config.probe_interval
            name = ping.source

            def repair(now: float) -> None:
                if name not in self._table and not self.leaving:
                    self.stats.repairs += 1
                    self._start_stream(source, self.push_pull_message(join=False), "repair")

            self._timers.schedule(now + self.config.probe_interval, repair)

    def _on_ack(self, source: Address, seq: int, now: float) -> None:
        handler = self._handlers.pop(seq, None)
        if handler is None:
            return
        if isinstance(handler, _Relay):
            handler.acked = True
            self._send(handler.requester, [codec.encode_message(Ack(handler.seq))])
            return
        handler.acked = True
        for timer in (handler.timeout_timer, handler.end_timer):
            if timer is not None:
                timer.cancel()
        if self.ack_listener is not None:
            self.ack_listener(handler.target)
        state = self._table.get(handler.target)
        if state is None or source != state.address:
            return  # acked through a relay: the target lives, but this is no RTT sample
        rtt_ms = (now - handler.sent) * 1000.0
        state.last_rtt_ms = rtt_ms
        state.last_seen = now
        hist = self.stats.rtt.get(state.name)
        if hist is None:
            hist = self.stats.rtt[state.name] = RttHistogram()
        hist.observe(rtt_ms)
        alpha = self.config.rtt_alpha
        state.rtt_ms = (
            rtt_ms if state.rtt_ms is None else state.rtt_ms + alpha * (rtt_ms - state.rtt_ms)
        )
        if self.config.lifeguard and now - handler.sent <= self._scaled(self.config.probe_timeout):
            self._awareness.apply(-1)

    def _on_ping_req(self, source: Address, req: PingReq, now: float) -> None:
        seq = self._next_seq()
        relay = _Relay(source, req.seq)
        self._handlers[seq] = relay
        self._send(req.target_address, [codec.encode_message(Ping(seq, req.target, self.name))])
        if req.nack:
            nack = codec.encode_message(Nack(req.seq))

            def send_nack(_now: float) -> None:
                if not relay.acked:
                    self._send(source, [nack])

            self._timers.schedule(now + _NACK_FRACTION * self.config.probe_timeout, send_nack)

        def expire(_now: float) -> None:
            if self._handlers.get(seq) is relay:
                del self._handlers[seq]

        self._timers.schedule(now + self.config.probe_interval, expire)

    # -- gossip, anti-entropy, reconnection ------------------------------------------------

    def _send(self, address: Address, primary: list[bytes]) -> None:
        budget = self._budget - sum(len(m) for m in primary)
        piggyback = (
            self._broadcasts.take(budget, self.retransmit_limit()) if self._broadcasts else []
        )
        data = codec.encode_packet(self._label, primary + piggyback)
        self.stats.packets_sent += 1
        self.stats.bytes_sent += len(data)
        self._outbox.append(SendPacket(address, data))

    def _arm_gossip(self, now: float) -> None:
        """Gossip at this node's next tick of a virtual ticker (phase drawn at start), like
        memberlist's free-running ticker: news waits half an interval on average, and an idle
        node (empty queue) never wakes for gossip."""
        if self._gossip_timer is None:
            interval = self.config.gossip_interval
            ticks = math.floor((now - self._gossip_phase) / interval) + 1
            self._gossip_timer = self._timers.schedule(
                self._gossip_phase + ticks * interval, self._gossip_tick
            )

    def _gossip_tick(self, now: float) -> None:
        self._gossip_timer = None
        limit = self.retransmit_limit()
        for name in self._gossip.sample(self.rng, self.config.gossip_nodes):
            if not self._broadcasts:
                break
            msgs = self._broadcasts.take(self._budget, limit)
            if msgs:
                data = codec.encode_packet(self._label, msgs)
                self.stats.packets_sent += 1
                self.stats.bytes_sent += len(data)
                self._outbox.append(SendPacket(self._table[name].address, data))
        if self._broadcasts:
            self._arm_gossip(now)

    def _start_stream(self, address: Address, message: StreamMessage, purpose: str) -> None:
        request_id = self._next_seq()
        self._streams[request_id] = (purpose, address)
        self._outbox.append(StartStream(request_id, address, message, self.config.tcp_timeout))

    def _push_pull_tick(self, now: float) -> None:
        interval = push_pull_scale(self.config.push_pull_interval, self._live)
        self._timers.schedule(now + interval, self._push_pull_tick)
        if self.leaving or self._active_push_pulls >= self.config.max_concurrent_push_pulls:
            return
        partner = self._alive.sample(self.rng, 1)
        if partner:
            self._active_push_pulls += 1
            self._start_stream(
                self._table[partner[0]].address, self.push_pull_message(join=False), "push-pull"
            )

    def _reconnect_tick(self, now: float) -> None:
        """Serf's reconnect: retry failed members and absent seeds so healed partitions merge
        even after the tombstones are gone."""
        c = self.config
        self._timers.schedule(
            now + c.reconnect_interval * self.rng.uniform(0.8, 1.2), self._reconnect_tick
        )
        if self.leaving:
            return
        for name, (_, since) in list(self._failed.items()):
            if now - since > c.reconnect_timeout:
                del self._failed[name]
        targets: list[Address] = []
        if self._failed and self.rng.random() < len(self._failed) / max(1, len(self._alive)):
            name = self.rng.choice(sorted(self._failed))
            targets.append(self._failed[name][0])
        if self.seeds:
            live_addresses = {self._table[n].address for n in self._alive}
            live_addresses.add(self.address)
            targets.extend(s for s in self.seeds if s not in live_addresses and s not in targets)
        for address in targets:
            self.stats.reconnect_attempts += 1
            self._start_stream(address, self.push_pull_message(join=True), "reconnect")


def _check_metadata(metadata: Mapping[str, str], limit: int) -> None:
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"metadata keys and values must be strings, got {k!r}: {v!r}")
    size = codec.metadata_size(metadata)
    if size > limit:
        raise MetadataTooLarge(
            f"metadata encodes to {size} bytes, above max_metadata_bytes={limit}"
        )
