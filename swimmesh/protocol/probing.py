"""The failure detector: one probe per probe interval, escalating when the target is silent.

A probe sends ``ping`` and waits ``probe_timeout``; without an ack it asks ``indirect_checks``
relays to ``ping-req`` the target (Lifeguard: each relay answers ``nack`` if it got nothing
either) and, if enabled, pings over the stream channel too. An ack from anywhere by the end of
the probe interval saves the target; otherwise the host suspects it. With Lifeguard, the
local health score rises with every failed probe and missed nack and falls with each timely
direct ack, and it stretches the probe interval and timeout.
"""

from __future__ import annotations

import logging
import random

import attrs

from .. import codec
from ..config import MeshConfig
from ..member import Address, MemberStatus
from ..messages import Ack, ClaimMessage, Nack, Ping, PingReq, StreamPing
from .awareness import Awareness
from .gossip import Gossip
from .host import Host
from .outputs import StreamPurpose
from .stats import RttHistogram, Stats
from .table import MemberTable, claim_about
from .timers import Timer, TimerQueue

log = logging.getLogger("swimmesh.protocol")

_ALIVE, _SUSPECT = MemberStatus.ALIVE, MemberStatus.SUSPECT
NACK_FRACTION = 0.8
"""A relay sends its nack this far into the requester's probe timeout (Lifeguard)."""


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


class Prober:
    """Probes members in round-robin order and relays other nodes' ping-reqs."""

    def __init__(
        self,
        host: Host,
        config: MeshConfig,
        table: MemberTable,
        gossip: Gossip,
        timers: TimerQueue,
        rng: random.Random,
        awareness: Awareness,
        stats: Stats,
    ) -> None:
        self._host = host
        self._config = config
        self._name = config.name
        self._table = table
        self._gossip = gossip
        self._timers = timers
        self._rng = rng
        self._awareness = awareness
        self._stats = stats
        self._handlers: dict[int, _Probe | _Relay] = {}

    def _eligible(self, name: str) -> bool:
        state = self._table.get(name)
        return state is not None and state.status in (_ALIVE, _SUSPECT)

    def _scaled(self, value: float) -> float:
        return self._awareness.scale(value) if self._config.lifeguard else value

    def tick(self, now: float) -> None:
        """Probe the next member in the order, and schedule the next probe."""
        interval = self._scaled(self._config.probe_interval)
        self._timers.schedule(now + interval, self.tick)
        if self._host.leaving:
            return
        target = self._table.probes.next(self._eligible)
        if target is not None:
            self._probe(target, now, interval)

    def _probe(self, target: str, now: float, interval: float) -> None:
        state = self._table[target]
        seq = self._host.next_seq()
        probe = _Probe(target, seq, sent=now, deadline=now + interval)
        self._handlers[seq] = probe
        msgs = [codec.encode_message(Ping(seq, target, self._name))]
        if state.status is _SUSPECT and self._config.lifeguard:
            # Buddy system: tell the suspect directly so it can refute at once.
            buddy = claim_about(state, _SUSPECT, self._name)
            msgs.append(codec.encode_message(ClaimMessage(buddy)))
        self._gossip.send(state.address, msgs)
        self._stats.probes += 1
        timeout = self._scaled(self._config.probe_timeout)
        probe.timeout_timer = self._timers.schedule(
            now + timeout, lambda now: self._on_timeout(probe, now)
        )
        probe.end_timer = self._timers.schedule(
            now + interval, lambda now: self._on_end(probe, now)
        )

    def _on_timeout(self, probe: _Probe, now: float) -> None:
        if probe.acked:
            return
        state = self._table.get(probe.target)
        if state is None or state.status not in (_ALIVE, _SUSPECT):
            return
        c = self._config
        relays = self._table.alive.sample(self._rng, c.indirect_checks, exclude=probe.target)
        nack = c.lifeguard
        msg = codec.encode_message(
            PingReq(probe.seq, probe.target, state.address, self._name, nack)
        )
        for relay in relays:
            self._gossip.send(self._table[relay].address, [msg])
        self._stats.indirect_probes += len(relays)
        if nack:
            probe.expected_nacks = len(relays)
        if c.stream_fallback:
            # memberlist's TCP ping: alongside the relays, ask over the stream channel.
            remaining = max(probe.deadline - now, 0.0)
            self._host.open_stream(
                state.address,
                StreamPing(probe.seq, probe.target),
                StreamPurpose.FALLBACK_PING,
                remaining,
                request_id=probe.seq,
            )

    def _on_end(self, probe: _Probe, now: float) -> None:
        if self._handlers.get(probe.seq) is probe:
            del self._handlers[probe.seq]
        self._host.forget_stream(probe.seq)
        if probe.acked:
            return
        if probe.stream_ok:
            self._stats.stream_fallbacks += 1
            log.warning(
                "peer answered over the stream channel but not over UDP (UDP blocked?)",
                extra={"node": self._name, "peer": probe.target},
            )
            return
        self._stats.probe_failures += 1
        if self._config.lifeguard:
            missed = probe.expected_nacks - probe.nacks
            self._awareness.apply(missed if probe.expected_nacks > 0 else 1)
        self._host.probe_failed(probe.target, now)

    # -- answers -----------------------------------------------------------------------

    def on_nack(self, seq: int) -> None:
        handler = self._handlers.get(seq)
        if isinstance(handler, _Probe):
            handler.nacks += 1

    def on_stream_ping(self, seq: int, answered: bool) -> None:
        """The outcome of a fallback ping over the stream channel."""
        probe = self._handlers.get(seq)
        if isinstance(probe, _Probe) and answered:
            probe.stream_ok = True

    def on_ack(self, source: Address, seq: int, now: float) -> None:
        handler = self._handlers.pop(seq, None)
        if handler is None:
            return
        if isinstance(handler, _Relay):
            handler.acked = True
            self._gossip.send(handler.requester, [codec.encode_message(Ack(handler.seq))])
            return
        handler.acked = True
        for timer in (handler.timeout_timer, handler.end_timer):
            if timer is not None:
                timer.cancel()
        if self._host.ack_listener is not None:
            self._host.ack_listener(handler.target)
        state = self._table.get(handler.target)
        if state is None or source != state.address:
            return  # acked through a relay: the target lives, but this is no RTT sample
        rtt_ms = (now - handler.sent) * 1000.0
        state.last_rtt_ms = rtt_ms
        state.last_seen = now
        hist = self._stats.rtt.get(state.name)
        if hist is None:
            hist = self._stats.rtt[state.name] = RttHistogram()
        hist.observe(rtt_ms)
        alpha = self._config.rtt_alpha
        state.rtt_ms = (
            rtt_ms if state.rtt_ms is None else state.rtt_ms + alpha * (rtt_ms - state.rtt_ms)
        )
        if self._config.lifeguard and now - handler.sent <= self._scaled(
            self._config.probe_timeout
        ):
            self._awareness.apply(-1)

    def on_ping_req(self, source: Address, req: PingReq, now: float) -> None:
        """Ping the target for ``source``; forward its ack, or (Lifeguard) nack in time."""
        seq = self._host.next_seq()
        relay = _Relay(source, req.seq)
        self._handlers[seq] = relay
        self._gossip.send(
            req.target_address, [codec.encode_message(Ping(seq, req.target, self._name))]
        )
        if req.nack:
            nack = codec.encode_message(Nack(req.seq))

            def send_nack(_now: float) -> None:
                if not relay.acked:
                    self._gossip.send(source, [nack])

            self._timers.schedule(now + NACK_FRACTION * self._config.probe_timeout, send_nack)

        def expire(_now: float) -> None:
            if self._handlers.get(seq) is relay:
                del self._handlers[seq]

        self._timers.schedule(now + self._config.probe_interval, expire)
