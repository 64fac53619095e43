"""``swimmesh demo --in-process``: nodes on the in-memory network, each with a leadership
coordinator; the global leader crashes, then another leader steps down and leaves. It runs in
real time (it is meant to be watched) and reports each step through ``say``."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import trio

from leadership import (
    EventKind,
    InMemoryLeaseStore,
    LeadershipConfig,
    LeadershipCoordinator,
    token_json,
)
from peerhealth.timefmt import rfc3339

from ..config import MeshConfig
from ..control.mesh import peer_json
from ..leadership_view import MeshMembershipView
from ..member import MemberStatus
from ..runtime import MeshNode
from ..testing import MemoryNetwork, wait_for
from .render import leaders_table, peers_table

DEMO_LEADERSHIP = {
    "leaseDuration": "2s",
    "renewalLeadTime": "1s",
    "evaluationInterval": "200ms",
    "electionBackoff": "200ms",
    "maxElectionWindow": "2s",
    "scopes": [{"scopeId": "global-control"}],
    "shards": [{"namespace": "demo", "shards": ["0", "1", "2", "3"]}],
}
"""Short leases, so the demo's failover takes seconds, not a default lease of 8 s."""


def members_table(node: MeshNode) -> str:
    """``node``'s view in the layout of ``mesh peers list`` (without the metadata columns)."""
    mono, wall = trio.current_time(), time.time()
    members = sorted(node.members(), key=lambda m: m.name)
    doc = {"peers": [peer_json(m, mono, wall, m.name == node.name) for m in members]}
    return peers_table(doc, metadata=False)


def split_brain_note(victim: str, reports: list[tuple[str, str]]) -> str:
    """Why a crash produces split-brain reports, and what their number counts; ``reports``
    holds one ``(reporting node, scope)`` per report."""
    nodes = len({node for node, _ in reports})
    scopes = len({scope for _, scope in reports})
    return (
        f"{len(reports)} split-brain report(s), from {nodes} node(s) about {scopes} scope(s) "
        f"{victim} led: each node saw {victim} drop out of gossip while its lease was still "
        "valid, and reports that once per scope, since it cannot rule out a leader it no "
        "longer sees. That is the detector working after a crash, not two leaders: nobody "
        "else led those scopes until the lease ran out."
    )


class _Demo:
    """The nodes and coordinators of one demo run, each node in its own cancel scope."""

    def __init__(self, nodes: int, preset: str, seed: int) -> None:
        self.net = MemoryNetwork(seed=seed)
        self.net.set_latency(0.001, 0.0005)
        self.store = InMemoryLeaseStore()
        self.leadership = LeadershipConfig.from_mapping(DEMO_LEADERSHIP)
        self.scope_ids = [s.scope_id for s in self.leadership.scopes]
        self.names = [f"node-{i}" for i in range(nodes)]
        self.preset, self.seed = preset, seed
        self.running: dict[str, MeshNode] = {}
        self.coordinators: dict[str, LeadershipCoordinator] = {}
        self.scopes: dict[str, trio.CancelScope] = {}
        self.formed = trio.Event()

    async def run(self, name: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        cfg = MeshConfig.from_preset(
            self.preset, name=name, bind=(name, 7946), seed=self.seed + len(self.running)
        )
        with trio.CancelScope() as scope:
            self.scopes[name] = scope
            async with MeshNode.open(cfg, self.net.endpoint(cfg.bind)) as node:
                self.running[name] = node
                task_status.started()
                await self.formed.wait()
                async with LeadershipCoordinator.open(
                    self.leadership, self.store.client(name), MeshMembershipView(node)
                ) as coordinator:
                    self.coordinators[name] = coordinator
                    await trio.sleep_forever()
                await trio.sleep_forever()  # the node stays in the mesh after its coordinator

    def stop(self, name: str) -> None:
        self.scopes[name].cancel()
        del self.running[name]

    def everyone_sees(self, status: MemberStatus, about: str) -> bool:
        return all(n.status_of(about) is status for k, n in self.running.items() if k != about)

    def leader(self, scope: str) -> str | None:
        found = [n for n, c in self.coordinators.items() if c.is_leader(scope)]
        return found[0] if found else None

    def leaders(self) -> str:
        observer = self.coordinators[min(self.coordinators)]
        doc = {
            "generatedAt": rfc3339(datetime.now(UTC)),
            "tokens": [token_json(t) for t in observer.tokens()],
        }
        return leaders_table(doc)


async def in_process_demo(nodes: int, preset: str, seed: int, say: Callable[[str], None]) -> None:
    """Form, elect, crash the global leader, hand over gracefully; ``TimeoutError`` if a step
    does not happen within its bound."""
    d = _Demo(nodes, preset, seed)
    names = d.names
    async with trio.open_nursery() as nursery:
        for name in names:
            await nursery.start(d.run, name)
        for name in names[1:]:
            await d.running[name].join([(names[0], 7946)])
        took = await wait_for(
            lambda: all(len(n.alive_members()) == nodes for n in d.running.values()),
            timeout=30,
            what="mesh formation",
        )
        say(f"{nodes} in-process nodes formed a mesh in {took * 1000:.0f} ms ({preset} preset)\n")
        say(members_table(d.running[names[0]]))
        d.formed.set()
        took = await wait_for(
            lambda: len(d.coordinators) == nodes and all(d.leader(s) for s in d.scope_ids),
            timeout=30,
            what="elections",
        )
        say(f"\nevery scope elected a leader {took * 1000:.0f} ms after the coordinators started\n")
        say(d.leaders())
        if nodes >= 3:
            await _crash_and_leave(d, say)
        nursery.cancel_scope.cancel()


async def _crash_and_leave(d: _Demo, say: Callable[[str], None]) -> None:
    victim = d.leader("global-control")
    assert victim is not None
    old = d.coordinators[victim].election("global-control").token
    assert old is not None
    d.coordinators.pop(victim).crash()  # a crash: nothing is released
    d.stop(victim)
    start = trio.current_time()
    took = await wait_for(
        lambda: d.everyone_sees(MemberStatus.DEAD, victim), timeout=60, what="failure detection"
    )
    await wait_for(
        lambda: d.leader("global-control") is not None, timeout=30, poll=0.002, what="failover"
    )
    failover = trio.current_time() - start
    successor = d.leader("global-control")
    assert successor is not None
    new = d.coordinators[successor].election("global-control").token
    assert new is not None
    reports = [
        (name, e.scope)
        for name, c in d.coordinators.items()
        for e in c.hub.history()
        if e.kind is EventKind.SPLIT_BRAIN and e.leader_id == victim
    ]
    say(
        f"\ncrashed {victim}, leader of global-control (fence {old.fence_token}): every "
        f"node saw it Dead after {took:.2f} s; {successor} was elected with fence "
        f"{new.fence_token} after {failover:.2f} s, once its lease ran out."
    )
    say(split_brain_note(victim, reports))
    leaders_now = {d.leader(s) for s in d.scope_ids}
    leaver = next(
        (n for n in reversed(d.names) if n in d.coordinators and n in leaders_now),
        next(n for n in reversed(d.names) if n in d.coordinators),
    )
    led = [s for s in d.scope_ids if d.leader(s) == leaver]
    start = trio.current_time()
    await d.coordinators.pop(leaver).stop()  # step down and release, then leave
    await wait_for(
        lambda: all(d.leader(s) not in (None, leaver) for s in led),
        timeout=10,
        poll=0.002,
        what="handover",
    )
    handed = trio.current_time() - start
    start = trio.current_time()
    await d.running[leaver].leave()
    d.stop(leaver)
    await wait_for(lambda: d.everyone_sees(MemberStatus.LEFT, leaver), timeout=10, what="leave")
    took = trio.current_time() - start
    say(
        f"{leaver} stepped down: its {len(led)} scope(s) had new leaders after "
        f"{handed * 1000:.0f} ms; it left, and every node saw it Left after "
        f"{took * 1000:.0f} ms\n"
    )
    say(members_table(d.running[min(d.running)]))
    say("")
    say(d.leaders())
