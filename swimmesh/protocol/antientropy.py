"""Anti-entropy: full-state push-pull exchanges that repair what gossip missed.

Four occasions open one (each a :class:`StreamPurpose`): the periodic exchange with a random
peer (its interval scaled with cluster size), two settling exchanges right after a join, a
repair pull from a peer that probes us while we do not know it, and Serf's reconnect, which
retries failed members and absent seeds so healed partitions merge even after the tombstones
are gone.
"""

from __future__ import annotations

import math
import random

import attrs

from ..config import MeshConfig
from ..member import Address, MemberStatus
from ..messages import PushPull
from .host import Host
from .outputs import StreamPurpose
from .stats import Stats
from .table import MemberTable
from .timers import TimerQueue

_SUSPECT, _DEAD = MemberStatus.SUSPECT, MemberStatus.DEAD


def push_pull_scale(interval: float, n: int) -> float:
    """memberlist's push-pull interval scaling: one more multiple per doubling above 32."""
    if n <= 32:
        return interval
    return interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)


class AntiEntropy:
    """Schedules and opens this node's push-pull exchanges."""

    def __init__(
        self,
        host: Host,
        config: MeshConfig,
        table: MemberTable,
        timers: TimerQueue,
        rng: random.Random,
        stats: Stats,
    ) -> None:
        self._host = host
        self._config = config
        self._table = table
        self._timers = timers
        self._rng = rng
        self._stats = stats
        self.seeds: list[Address] = []
        self.active = 0
        """Periodic exchanges under way (at most ``max_concurrent_push_pulls``)."""
        self._next_repair = -math.inf

    def message(self, join: bool) -> PushPull:
        """This node's whole table as a push-pull message."""
        self._stats.push_pulls += 1
        states, encoded = self._table.push_pull_entries()
        return PushPull(join=join, states=states, encoded=encoded)

    def merge(self, msg: PushPull, now: float, peer: Address, *, initiator: bool = False) -> None:
        """Merge the full state of the peer at ``peer``. A remote DEAD becomes a local SUSPECT
        (the member gets a chance to refute). What is new here is re-gossiped, except when this
        node asked for the exchange knowing nobody yet: a fresh joiner would only echo back
        what the mesh already knows."""
        fresh = initiator and len(self._table) <= 1
        source = "push-pull@" + ":".join(map(str, peer))
        local = self._config.name
        for claim in msg.states:
            if claim.status in (_SUSPECT, _DEAD) and claim.name != local:
                claim = attrs.evolve(claim, status=_SUSPECT, source=source)
            known = claim.name in self._table
            self._host.apply_claim(claim, now, rebroadcast=known or not fresh)

    def _open(self, address: Address, purpose: StreamPurpose, join: bool = False) -> None:
        message = self.message(join=join)
        self._host.open_stream(address, message, purpose, self._config.tcp_timeout)

    def push_pull_tick(self, now: float) -> None:
        interval = push_pull_scale(self._config.push_pull_interval, self._table.live)
        self._timers.schedule(now + interval, self.push_pull_tick)
        if self._host.leaving or self.active >= self._config.max_concurrent_push_pulls:
            return
        partner = self._table.alive.sample(self._rng, 1)
        if partner:
            self.active += 1
            self._open(self._table[partner[0]].address, StreamPurpose.PUSH_PULL)

    def add_seeds(self, seeds: list[Address]) -> None:
        for seed in seeds:
            if seed not in self.seeds:
                self.seeds.append(seed)

    def joined(self, now: float) -> None:
        """Settle with two extra exchanges after 1 and 5 probe intervals."""
        for intervals in (1, 5):
            delay = intervals * self._config.probe_interval * self._rng.uniform(1.0, 1.5)
            if delay < self._config.push_pull_interval:
                self._timers.schedule(now + delay, self._settle_tick)

    def _settle_tick(self, now: float) -> None:
        if self._host.leaving:
            return
        partner = self._table.alive.sample(self._rng, 1)
        if partner:
            self._open(self._table[partner[0]].address, StreamPurpose.SETTLE)

    def unknown_prober(self, name: str, address: Address, now: float) -> None:
        """A peer we do not know probes us. Its alive claim may still be on its way (a join
        storm); if it is still unknown one probe interval later we missed it, and likely
        others: pull the peer's whole table. At most one repair per probe interval."""
        if now < self._next_repair:
            return
        self._next_repair = now + self._config.probe_interval

        def repair(now: float) -> None:
            if name not in self._table and not self._host.leaving:
                self._stats.repairs += 1
                self._open(address, StreamPurpose.REPAIR)

        self._timers.schedule(now + self._config.probe_interval, repair)

    def reconnect_tick(self, now: float) -> None:
        c = self._config
        self._timers.schedule(
            now + c.reconnect_interval * self._rng.uniform(0.8, 1.2), self.reconnect_tick
        )
        if self._host.leaving:
            return
        failed, alive = self._table.failed, self._table.alive
        for name, (_, since) in list(failed.items()):
            if now - since > c.reconnect_timeout:
                del failed[name]
        targets: list[Address] = []
        if failed and self._rng.random() < len(failed) / max(1, len(alive)):
            name = self._rng.choice(sorted(failed))
            targets.append(failed[name][0])
        if self.seeds:
            live_addresses = {self._table[n].address for n in alive}
            live_addresses.add(self._config.advertise_address)
            targets.extend(s for s in self.seeds if s not in live_addresses and s not in targets)
        for address in targets:
            self._stats.reconnect_attempts += 1
            self._open(address, StreamPurpose.RECONNECT, join=True)
