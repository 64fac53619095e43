"""Randomized schedules that drive the real quorum voter and candidate code (no event loop).

Each schedule runs a few voters and candidates on a discrete-event network over true time:
clocks with an offset and a piecewise rate within ``1 +- eps``, long-tailed delays, loss,
duplication, partitions, process pauses (the clock runs on), crashes and restarts (a new boot
id; promised terms survive through the voter's :class:`PromiseStore`), a voter crashing right
after it grants and a leader pausing right after a successful round. Every message goes through
the wire encoding. On the true time axis the checker holds:

* **exclusion**: when a node becomes leader of a scope, no other node's ``is_leader`` answers
  yes for that scope at that instant (believed intervals only begin at such moments);
* **fence order**: acquisitions of a scope have strictly increasing terms in the order they
  happened;
* **stale writes**: a :class:`~leadership.FenceGuard` in front of a resource never accepts a
  write of an older tenure after one of a newer tenure (writes may stall up to two leases).

Reconfiguration variants add a proposer that changes the voter set one member at a time
(:mod:`leadership.quorum.reconfig`) among six nodes, removing voters that are down and adding
nodes that are up, while every node campaigns.

Broken variants replace one rule (see :data:`VARIANTS`) to show the checker catches each.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from leadership.fencing import FenceGuard, StaleFenceError
from leadership.quorum import (
    Abandoned,
    Elected,
    LeaseCandidate,
    LeaseVoter,
    MemoryPromises,
    Outbound,
    PromiseState,
    Refused,
    RoundStep,
    VoterConfig,
    decode,
    encode,
)
from leadership.quorum.candidate import RoundKind, _Round
from leadership.quorum.reconfig import VoterSetProposer
from leadership.quorum.wire import (
    ConfigCommit,
    ConfigCommitted,
    ConfigPrepare,
    ConfigPrepared,
    LeaseReply,
    LeaseRequest,
    ReleaseRequest,
    Verdict,
)
from leadership.tokens import Holder, LeadershipToken

D = 10.0
"""The longest lease (voters clamp to it); every time below is a multiple of it."""
PROPOSER = "proposer"
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@attrs.frozen
class Variant:
    name: str
    voters: int = 3
    extra: int = 1
    scopes: int = 2
    horizon: float = 20.0
    eps: float = 0.05
    sit_out: bool = True
    persist: bool = True
    candidate: type[LeaseCandidate] = LeaseCandidate
    guard: bool = True
    """Writes pass a FenceGuard; without one, stale writes from paused ex-leaders land."""
    universe: int = 0
    """Reconfiguration mode when > 0: this many nodes, the first ``voters`` of them voting."""
    change_gap: bool = True
    views: bool = True
    """Replies carry the voter's configuration."""
    thrifty: bool = False
    """Renewals ask a majority (a random voter sometimes reported down) and widen later."""
    rare: bool = False
    """Broken, but random schedules hit it rarely (under 1 in 1000): a scenario test shows it."""
    expect_safe: bool = True
    about: str = ""


class _TimerAtQuorum(LeaseCandidate):
    """Broken: the lease runs from the moment the quorum is counted, not from before sending."""

    def _validity_start(self, rnd: _Round, now: float) -> float:
        return now


class _TermOnlyReplies(LeaseCandidate):
    """Broken: a grant counts for any round of the same term."""

    def _answers(self, verdict: Verdict, rnd: _Round) -> bool:
        return verdict.term == rnd.term


class _NoGapProposer(VoterSetProposer):
    """Broken: the next voter-set change may start as soon as one completes."""

    def gap(self) -> float:
        return 0.0


class _WholeLease(LeaseCandidate):
    """Broken: believes the whole granted duration (no allowance for clock-rate drift)."""

    def __init__(self, holder: Holder, config: VoterConfig, **kw: Any) -> None:
        super().__init__(holder, config, **kw)
        self.factor = 1.0


VARIANTS = {
    v.name: v
    for v in [
        Variant("static3", about="3 voters + 1 other candidate, every rule"),
        Variant("static5", voters=5, about="5 voters + 1 other candidate, every rule"),
        Variant(
            "thrifty3",
            thrifty=True,
            about="static3 with thrifty renewals (a majority asked, widened when late)",
        ),
        Variant(
            "thrifty5",
            voters=5,
            thrifty=True,
            about="static5 with thrifty renewals (a majority asked, widened when late)",
        ),
        Variant(
            "timer-at-quorum",
            candidate=_TimerAtQuorum,
            expect_safe=False,
            about="lease timer started at quorum instead of before sending",
        ),
        Variant(
            "no-sit-out", sit_out=False, expect_safe=False, about="a restarted voter grants at once"
        ),
        Variant(
            "no-persist", persist=False, expect_safe=False, about="promised terms lost on restart"
        ),
        Variant(
            "term-only-replies",
            candidate=_TermOnlyReplies,
            expect_safe=False,
            rare=True,
            about="replies matched by term only, not by round",
        ),
        Variant(
            "whole-lease",
            candidate=_WholeLease,
            expect_safe=False,
            about="no drift factor: believes start + granted",
        ),
        Variant(
            "reconfig",
            universe=6,
            horizon=30.0,
            about="voter set changed one member at a time (prepare, commit, gap) among 6 nodes",
        ),
        Variant(
            "reconfig-no-gap",
            universe=6,
            horizon=30.0,
            change_gap=False,
            expect_safe=False,
            rare=True,
            about="the next voter-set change starts as soon as one completes",
        ),
        Variant(
            "reconfig-no-views",
            universe=6,
            horizon=30.0,
            views=False,
            expect_safe=False,
            rare=True,
            about="replies do not carry the voter's configuration",
        ),
        Variant(
            "unguarded",
            guard=False,
            expect_safe=False,
            about="the resource takes writes without checking fences",
        ),
    ]
}


class _Clock:
    """A node's local clock: offset plus a piecewise-constant rate in [1 - eps, 1 + eps]."""

    def __init__(self, rng: random.Random, t: float, eps: float) -> None:
        self.rng = rng
        self.eps = eps
        self.t = t
        self.local = rng.uniform(0, 1000.0)
        self.rate = self._pick()
        self.next_change = t + rng.uniform(0.3, 3.0) * D

    def _pick(self) -> float:
        r = self.rng.random()
        if r < 0.35:
            return 1 - self.eps
        if r < 0.7:
            return 1 + self.eps
        return self.rng.uniform(1 - self.eps, 1 + self.eps)

    def read(self, t: float) -> float:
        while t > self.next_change:
            self.local += (self.next_change - self.t) * self.rate
            self.t = self.next_change
            self.rate = self._pick()
            self.next_change = self.t + self.rng.uniform(0.3, 3.0) * D
        self.local += (t - self.t) * self.rate
        self.t = t
        return self.local


@attrs.define
class _Node:
    name: str
    is_voter: bool
    promises: MemoryPromises
    up: bool = False
    paused: bool = False
    gen: int = 0
    boot: int = 0
    clock: _Clock | None = None
    voter: LeaseVoter | None = None
    cand: LeaseCandidate | None = None
    pending: list[Any] = attrs.field(factory=list)
    backoff: dict[str, float] = attrs.field(factory=dict)
    tenure: dict[str, int] = attrs.field(factory=dict)


@attrs.frozen
class Violation:
    kind: str
    scope: str
    time: float
    detail: str


@attrs.define
class ScheduleResult:
    seed: int
    variant: str
    violations: list[Violation]
    stats: dict[str, int]


class Schedule:
    """One randomized schedule; :meth:`run` returns its violations and counters."""

    def __init__(self, variant: Variant, seed: int) -> None:
        self.v = variant
        self.seed = seed
        self.rng = rng = random.Random(seed)
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        on = rng.random
        # each schedule draws its own mix of faults, each class on or off
        light = on() < 0.5
        loss = rng.uniform(0, 0.05) if light else rng.uniform(0.05, 0.3)
        self.p_loss = loss if on() < 0.65 else 0.0
        self.p_dup = rng.uniform(0, 0.1) if on() < 0.65 else 0.0
        self.p_long = rng.uniform(0, 0.25) if on() < 0.65 else 0.0
        self.pause_rate = 0.25 * rng.uniform(0.3, 2.0) if on() < 0.65 else 0.0
        self.crash_rate = 0.03 * rng.uniform(0.3, 2.0) if on() < 0.65 else 0.0
        self.hook_crash = 0.03 if on() < 0.5 else 0.0
        self.hook_pause = 0.08 if on() < 0.5 else 0.0
        self.partition_rate = 0.05 if on() < 0.65 else 0.0
        self.scopes = [f"s{i}" for i in range(variant.scopes)]
        if variant.universe:
            names = [f"n{i}" for i in range(variant.universe)]
        else:
            names = [f"v{i}" for i in range(variant.voters)]
            names += [f"c{i}" for i in range(variant.extra)]
        self.bootstrap = VoterConfig(1, frozenset(names[: variant.voters]))
        self.nodes = {name: _Node(name, self._votes(name), MemoryPromises()) for name in names}
        proposer = VoterSetProposer if variant.change_gap else _NoGapProposer
        self.proposer = proposer(self.bootstrap, max_duration=D, max_drift=variant.eps)
        self.proposer_clock = _Clock(random.Random(rng.random()), 0.0, variant.eps)
        self.up_since: dict[str, float] = dict.fromkeys(names, 0.0)
        self.groups: dict[str, int] | None = None
        self._partition_id = 0
        self.guard = FenceGuard()
        self.acquisitions: dict[str, list[tuple[str, int, float]]] = {s: [] for s in self.scopes}
        self.accepted_tenure: dict[str, int] = dict.fromkeys(self.scopes, -1)
        self.violations: list[Violation] = []
        self.stats = dict.fromkeys(
            [
                "acquired",
                "renewed",
                "restored",
                "refused",
                "abandoned",
                "writes_ok",
                "writes_rejected",
                "crashes",
                "pauses",
                "partitions",
                "messages",
            ],
            0,
        )
        for node in self.nodes.values():
            self._boot(node)
            if self.crash_rate:
                self._at(rng.expovariate(self.crash_rate / D), self._random_crash, node.name)
            if self.pause_rate:
                self._at(rng.expovariate(self.pause_rate / D), self._random_pause, node.name)
        if self.partition_rate:
            self._at(rng.expovariate(self.partition_rate / D), self._partition)
        if variant.thrifty:
            self.stats["thrifty_renewals"] = 0
            self.stats["widened"] = 0
        if variant.universe:
            self.stats["config_changes"] = 0
            self._at(0.1 * D, self._propose)
            self._at(D, self._config_anti_entropy)

    # ---------------------------------------------------------------- plumbing

    def run(self) -> ScheduleResult:
        end = self.v.horizon * D
        while self._queue:
            t, _, fn, args = heapq.heappop(self._queue)
            if t > end:
                break
            self.now = t
            fn(*args)
        return ScheduleResult(self.seed, self.v.name, self.violations, self.stats)

    def _at(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._seq), fn, args))

    def _local(self, node: _Node) -> float:
        assert node.clock is not None
        return node.clock.read(self.now)

    def _delay(self) -> float:
        r = self.rng.random()
        if r < self.p_long:
            return self.rng.uniform(0.1, 2.5) * D
        if r < 0.6:
            return self.rng.random() * 0.01 * D
        return self.rng.random() * 0.15 * D

    def _votes(self, name: str) -> bool:
        return bool(self.v.universe) or name in self.bootstrap.voters

    def _cut(self, a: str, b: str) -> bool:
        return self.groups is not None and self.groups[a] != self.groups[b]

    # ---------------------------------------------------------------- the voter-set proposer

    def _propose(self) -> None:
        self._at(0.1 * D, self._propose)
        now = self.proposer_clock.read(self.now)
        proposer = self.proposer
        if proposer.busy:
            out = proposer.pending()
            if out is not None:
                for target in sorted(out.targets):
                    self._send(PROPOSER, target, out.message)
            return
        if now < proposer.next_allowed or self.rng.random() < 0.5:
            return
        members = proposer.config.voters
        up = [n for n, node in self.nodes.items() if node.up]
        adds = [n for n in up if n not in members and self.now - self.up_since[n] >= D]
        removes = sorted(n for n in members if not self.nodes[n].up)
        if len(members) > 3 and self.rng.random() < 0.2:
            removes = sorted(members)
        choices = []
        if adds and len(members) < 6:
            choices.append(proposer.config.with_added(self.rng.choice(sorted(adds))))
        if removes and len(members) > 3:
            choices.append(proposer.config.with_removed(self.rng.choice(removes)))
        if choices:
            proposer.start(self.rng.choice(choices), now)
            self.stats["config_changes"] += 1

    def _proposer_receive(self, message: ConfigPrepared | ConfigCommitted) -> None:
        if isinstance(message, ConfigPrepared):
            self.proposer.on_prepared(message)
        else:
            self.proposer.on_committed(message, self.proposer_clock.read(self.now))

    def _config_anti_entropy(self) -> None:
        """Repeat the last completed change to every node, for those that missed it."""
        self._at(D, self._config_anti_entropy)
        proposer = self.proposer
        commit = ConfigCommit(proposer.config, tuple(sorted(proposer.completed_terms.items())))
        for name, node in self.nodes.items():
            if node.up:
                self._send(PROPOSER, name, commit)

    def _send(self, src: str, dst: str, message: Any) -> None:
        if self.rng.random() < self.p_loss or self._cut(src, dst):
            return
        payload = encode(message)
        self._at(self._delay(), self._deliver, src, dst, payload)
        if self.rng.random() < self.p_dup:
            self._at(self._delay(), self._deliver, src, dst, payload)

    def _send_out(self, src: str, out: Outbound | None) -> None:
        if out is not None:
            for target in sorted(out.targets):
                self._send(src, target, out.message)

    def _deliver(self, src: str, dst: str, payload: Any) -> None:
        if dst == PROPOSER:
            if not self._cut(src, dst):
                message = decode(payload)
                assert isinstance(message, ConfigPrepared | ConfigCommitted)
                self._proposer_receive(message)
            return
        node = self.nodes[dst]
        if self._cut(src, dst) or not node.up:
            return
        if node.paused:
            node.pending.append((src, payload))
            return
        self._handle(node, src, payload)

    def _handle(self, node: _Node, src: str, payload: Any) -> None:
        self.stats["messages"] += 1
        message = decode(payload)
        now = self._local(node)
        if isinstance(message, LeaseRequest):
            if node.voter is None:
                return
            reply = node.voter.on_request(message, now)
            self._send(node.name, src, reply if self.v.views else attrs.evolve(reply, config=None))
            granted = any(v.granted for v in reply.verdicts)
            if granted and self.hook_crash and self.rng.random() < self.hook_crash:
                self._at(self.rng.uniform(0, 0.02) * D, self._crash, node.name, node.gen, 0.03)
        elif isinstance(message, ReleaseRequest):
            if node.voter is not None:
                node.voter.on_release(message, now)
        elif isinstance(message, LeaseReply):
            assert node.cand is not None
            self._apply(node, node.cand.on_reply(message, now))
        elif isinstance(message, ConfigPrepare | ConfigCommit):
            assert node.voter is not None and node.cand is not None
            if isinstance(message, ConfigPrepare):
                ack: ConfigPrepared | ConfigCommitted = node.voter.on_prepare(message, now)
            else:
                ack = node.voter.on_commit(message, now)
            node.cand.learn_config(node.voter.config)
            self._send(node.name, src, ack)

    # ---------------------------------------------------------------- lifecycle

    def _boot(self, node: _Node) -> None:
        node.up, node.paused, node.pending = True, False, []
        node.gen += 1
        node.boot += 1
        node.clock = _Clock(random.Random(self.rng.random()), self.now, self.v.eps)
        now = self._local(node)
        holder = Holder(node.name, f"boot{node.boot}")
        self.up_since[node.name] = self.now
        bootstrap = config = self.bootstrap
        if node.is_voter:
            if not self.v.persist:
                node.promises = MemoryPromises(PromiseState(config=bootstrap))
            node.voter = LeaseVoter(
                node.name,
                max_duration=D,
                promises=node.promises,
                now=now,
                config=bootstrap,
                sit_out=None if self.v.sit_out else 0.0,
                max_drift=self.v.eps,
                change_gap=None if self.v.change_gap else 0.0,
            )
            config = node.voter.config
        node.cand = self.v.candidate(
            holder, config, duration=D, max_drift=self.v.eps, thrifty=self.v.thrifty
        )
        node.backoff = {}
        node.tenure = {}
        self._at(self.rng.uniform(0, 0.1) * D, self._tick, node.name, node.gen)

    def _crash(self, name: str, gen: int, restart_within: float) -> None:
        node = self.nodes[name]
        if not node.up or node.gen != gen:
            return
        self.stats["crashes"] += 1
        node.up, node.paused, node.pending = False, False, []
        node.gen += 1
        node.voter = None
        node.cand = None
        self._at(self.rng.uniform(0, restart_within) * D, self._boot, node)

    def _random_crash(self, name: str) -> None:
        self._at(self.rng.expovariate(self.crash_rate / D), self._random_crash, name)
        node = self.nodes[name]
        if node.up:
            slow = self.rng.random() < 0.5
            self._crash(name, node.gen, 3.0 if slow else 0.2)

    def _pause(self, node: _Node, length: float) -> None:
        self.stats["pauses"] += 1
        node.paused = True
        self._at(length, self._resume, node.name, node.gen)

    def _random_pause(self, name: str) -> None:
        self._at(self.rng.expovariate(self.pause_rate / D), self._random_pause, name)
        node = self.nodes[name]
        if node.up and not node.paused:
            r = self.rng.random()
            hi = 0.1 if r < 0.6 else (1.0 if r < 0.9 else 3.0)
            self._pause(node, self.rng.uniform(0, hi) * D)

    def _resume(self, name: str, gen: int) -> None:
        node = self.nodes[name]
        if not node.up or node.gen != gen:
            return
        node.paused = False
        pending, node.pending = node.pending, []
        for src, payload in pending:
            if not node.up or node.paused or node.gen != gen:
                return
            self._handle(node, src, payload)

    def _partition(self) -> None:
        names = [*sorted(self.nodes), PROPOSER]
        while True:
            groups = {n: self.rng.randrange(2) for n in names}
            if 0 < sum(groups.values()) < len(names):
                break
        self.groups = groups
        self._partition_id += 1
        self.stats["partitions"] += 1
        self._at(self.rng.uniform(0.5, 4.0) * D, self._heal, self._partition_id)

    def _heal(self, partition_id: int) -> None:
        if partition_id == self._partition_id:
            self.groups = None
            self._at(self.rng.expovariate(self.partition_rate / D), self._partition)

    # ---------------------------------------------------------------- candidates

    def _tick(self, name: str, gen: int) -> None:
        node = self.nodes[name]
        if not node.up or node.gen != gen:
            return
        self._at(self.rng.uniform(0.04, 0.2) * D, self._tick, name, gen)
        if node.paused:
            return
        cand = node.cand
        assert cand is not None
        now = self._local(node)
        renew = []
        for scope in self.scopes:
            kind = cand.in_flight(scope)
            if cand.is_leader(scope, now):
                if self.rng.random() < 0.012:
                    self._send_out(name, cand.release(scope))
                    node.backoff[scope] = now + self.rng.uniform(0.1, 0.5) * D
                    continue
                if self.rng.random() < 0.5:
                    self._write(node, scope)
                stale = kind is not None and self._round_age(cand, scope, now) > 0.5 * D
                if stale:
                    self._send_out(name, cand.abandon(scope))
                    kind = None
                if kind is None and now >= cand.deadline(scope) - 0.5 * D * cand.factor:
                    renew.append(scope)
                continue
            cand.step_down(scope)
            if kind is not None and self._round_age(cand, scope, now) > 0.5 * D:
                self._send_out(name, cand.abandon(scope))
                kind = None
            if kind is None and now >= node.backoff.get(scope, -1.0) and self.rng.random() < 0.6:
                self._send_out(name, cand.campaign([scope], now))
        if renew:
            down: list[str] = []
            if self.v.thrifty and self.rng.random() < 0.2:
                down = [self.rng.choice(sorted(cand.config.voters))]
            out = cand.renew(renew, now, down=down)
            if out is not None and out.targets != cand.config.voters:
                self.stats["thrifty_renewals"] += 1
            self._send_out(name, out)
        if self.v.thrifty:
            late = {
                st.round.round_id
                for st in cand._scopes.values()
                if st.round is not None and now - st.round.start > 0.05 * D
            }
            if late and self.rng.random() < 0.5:
                wide = cand.widen(late)
                if wide is not None:
                    self.stats["widened"] += 1
                self._send_out(name, wide)

    @staticmethod
    def _round_age(cand: LeaseCandidate, scope: str, now: float) -> float:
        rnd = cand._scopes[scope].round
        return 0.0 if rnd is None else now - rnd.start

    def _apply(self, node: _Node, step: RoundStep) -> None:
        for out in step.outbound:
            self._send_out(node.name, out)
        cand = node.cand
        assert cand is not None
        now = self._local(node)
        for decision in step.decisions:
            if isinstance(decision, Elected):
                self._check_exclusion(node, decision.scope)
                if decision.restored:
                    self.stats["restored"] += 1
                else:
                    self._acquired(node, decision.scope, decision.term)
                if self.hook_pause and self.rng.random() < self.hook_pause:
                    self._pause(node, self.rng.uniform(0.3, 1.5) * D)
            elif isinstance(decision, Refused):
                self.stats["refused"] += 1
                quick = decision.promised > decision.term
                node.backoff[decision.scope] = now + self.rng.uniform(0, 0.02 if quick else 0.3) * D
            elif isinstance(decision, Abandoned):
                self.stats["abandoned"] += 1
                if decision.kind is RoundKind.ACQUIRE:
                    self._send_out(node.name, cand.release(decision.scope))
            else:
                self.stats["renewed"] += 1
                if self.hook_pause and self.rng.random() < self.hook_pause:
                    self._pause(node, self.rng.uniform(0.3, 1.5) * D)

    # ---------------------------------------------------------------- the checker

    def _violate(self, kind: str, scope: str, detail: str) -> None:
        self.violations.append(Violation(kind, scope, self.now, detail))

    def _check_exclusion(self, node: _Node, scope: str) -> None:
        term = node.cand.term(scope) if node.cand is not None else 0
        for other in self.nodes.values():
            if other is node or not other.up or other.cand is None:
                continue
            if other.cand.is_leader(scope, self._local(other)):
                self._violate(
                    "exclusion",
                    scope,
                    f"{node.name} became leader of {scope} (term {term})"
                    f" while {other.name} (term {other.cand.term(scope)}) still believed it led",
                )

    def _acquired(self, node: _Node, scope: str, term: int) -> None:
        self.stats["acquired"] += 1
        history = self.acquisitions[scope]
        if history and term <= history[-1][1]:
            prev = history[-1]
            self._violate(
                "fence-order",
                scope,
                f"{node.name} acquired {scope} at term {term} after {prev[0]} acquired "
                f"term {prev[1]}",
            )
        node.tenure[scope] = len(history)
        history.append((node.name, term, self.now))

    def _write(self, node: _Node, scope: str) -> None:
        assert node.cand is not None
        delay = self._delay()
        if self.rng.random() < 0.2:
            # stalled between its leadership check and the write
            delay += self.rng.random() * 2.0 * D
        fence, tenure = node.cand.term(scope), node.tenure.get(scope, -1)
        self._at(delay, self._arrive, scope, fence, tenure, node.name)

    def _arrive(self, scope: str, fence: int, tenure: int, writer: str) -> None:
        token = LeadershipToken(scope, "custom", writer, fence, fence, _EPOCH, _EPOCH)
        try:
            if self.v.guard:
                self.guard.check(token)
        except StaleFenceError:
            self.stats["writes_rejected"] += 1
            return
        self.stats["writes_ok"] += 1
        newest = self.accepted_tenure[scope]
        if tenure < newest:
            self._violate(
                "stale-write",
                scope,
                f"the guard accepted {writer}'s write of tenure {tenure} (fence {fence}) after one "
                f"of tenure {newest}",
            )
        self.accepted_tenure[scope] = max(newest, tenure)


def run_schedule(variant: str | Variant, seed: int) -> ScheduleResult:
    v = VARIANTS[variant] if isinstance(variant, str) else variant
    return Schedule(v, seed).run()


def run_many(variant: str, seeds: range) -> tuple[int, dict[str, int], list[ScheduleResult]]:
    """Run ``seeds``; return (schedules with a violation, violations by kind, failing results)."""
    by_kind: dict[str, int] = {}
    failing = []
    for seed in seeds:
        result = run_schedule(variant, seed)
        if result.violations:
            failing.append(result)
            for kind in {v.kind for v in result.violations}:
                by_kind[kind] = by_kind.get(kind, 0) + 1
    return len(failing), by_kind, failing
