"""False-positive scenario of the Lifeguard paper: loss plus nodes that stall.

Every node stays alive during the fault phase, so every DEAD event then is a false positive and
every SUSPECT event a false suspicion. The scenario proves its faults happened: the stalls are
measured where they bite, as time during which datagrams were due at a victim but held back.
At the end, after the faults, one healthy node crashes for real, and the time until the first
node declares it dead shows the other side of the trade (Lifeguard's suspicion timeout starts
long but shrinks with independent confirmations). Run with ``python -m simulations.lifeguard``.
"""

from __future__ import annotations

import argparse
import json
import random

import attrs
import trio
import trio.testing

from swimmesh import MemberEventKind, MemberStatus
from swimmesh.testing import Cluster, EventLog, MemoryNetwork, replayable, wait_for


@attrs.frozen
class Outcome:
    lifeguard: bool
    nodes: int
    seconds: float
    loss: float
    stalls: int
    """Stalls requested."""
    stalls_observed: int
    """Stalls that held back at least one datagram at their victim."""
    stalled_seconds: float
    """Time datagrams were due at the victims but held back, summed over victims."""
    false_suspicions: int
    suspicions_per_victim: float
    """False suspicions about a stalled node, on average: how hard the stalls bit."""
    suspicions_per_bystander: float
    """False suspicions about a node that never stalled, on average."""
    false_deaths: int
    refutations: int
    nodes_ever_declared_dead: list[str]
    detection_seconds: float | None
    """From the final real crash to the first node declaring it dead (None: not within 60 s)."""


async def run(
    *,
    lifeguard: bool,
    nodes: int = 50,
    seconds: float = 300.0,
    loss: float = 0.10,
    stall: float = 1.5,
    stall_every: float = 5.0,
    stallers: int = 2,
    seed: int = 1,
) -> Outcome:
    """Form a mesh, run ``seconds`` of loss and random stalls of ``stallers`` nodes (none if
    ``stallers`` is 0), then crash one healthy node and time its detection."""
    rng = random.Random(seed)
    net = MemoryNetwork(seed=seed)
    net.set_latency(0.002, 0.001)
    names = [f"n{i:03d}" for i in range(nodes)]
    log = EventLog()
    stalls = 0
    # UDP only (no stream fallback ping, which the in-memory stream channel would never lose):
    # the stricter test, as in the Lifeguard paper.
    async with Cluster.open(
        "lan", network=net, seed=seed, lifeguard=lifeguard, stream_fallback=False
    ) as cluster:
        await cluster.start_many(names)
        await wait_for(lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=60)
        async with trio.open_nursery() as watchers:
            for node in cluster.live():
                await watchers.start(log.follow, node)
            net.set_loss(loss)
            victims = rng.sample(names, stallers)
            end = trio.current_time() + seconds
            while trio.current_time() < end:
                await trio.sleep(rng.expovariate(1.0 / stall_every))
                if victims:
                    net.pause((rng.choice(victims), 7946), stall)
                    stalls += 1
            net.set_loss(0.0)
            faults_over = trio.current_time()
            # Let the last stall drain and any refutation spread, then fail a node for real.
            with trio.move_on_after(120):
                while not cluster.views_agree(MemberStatus.ALIVE):
                    await trio.sleep(0.5)
            crashed = rng.choice([n for n in names[1:] if n not in victims])
            cluster.crash(crashed)
            crashed_at = trio.current_time()
            detection: float | None = None
            with trio.move_on_after(60):
                while not log.of(MemberEventKind.DEAD, about=crashed):
                    await trio.sleep(0.1)
                detection = log.of(MemberEventKind.DEAD, about=crashed)[0][0] - crashed_at
            watchers.cancel_scope.cancel()
        refutations = sum(n.stats.refutations for n in cluster.live())
    observed = [net.stats((v, 7946)) for v in victims]
    deaths = [r for r in log.of(MemberEventKind.DEAD) if r[0] <= faults_over]
    suspicions = [r for r in log.of(MemberEventKind.SUSPECT) if r[0] <= faults_over]
    of_victims = sum(1 for r in suspicions if r[2].member.name in victims)
    bystanders = nodes - len(victims)
    return Outcome(
        lifeguard=lifeguard,
        nodes=nodes,
        seconds=seconds,
        loss=loss,
        stalls=stalls,
        stalls_observed=sum(st.stalls for st in observed),
        stalled_seconds=sum(st.stalled_seconds for st in observed),
        false_suspicions=len(suspicions),
        suspicions_per_victim=of_victims / max(1, len(victims)),
        suspicions_per_bystander=(len(suspicions) - of_victims) / max(1, bystanders),
        false_deaths=len(deaths),
        refutations=refutations,
        nodes_ever_declared_dead=sorted({ev.member.name for _, _, ev in deaths}),
        detection_seconds=detection,
    )


def simulate(lifeguard: bool, **kwargs: object) -> Outcome:
    """Run one scenario in virtual time (a MockClock that jumps to the next timer)."""

    async def main() -> Outcome:
        return await run(lifeguard=lifeguard, **kwargs)  # type: ignore[arg-type]

    with replayable(int(kwargs.get("seed", 1))):  # type: ignore[call-overload]
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--loss", type=float, default=0.10)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for seed in range(1, args.seeds + 1):
        for lifeguard in (True, False):
            out = simulate(
                lifeguard, nodes=args.nodes, seconds=args.seconds, loss=args.loss, seed=seed
            )
            rows.append({"seed": seed, **attrs.asdict(out)})
    print(json.dumps(rows, indent=2))
    print(f"{'seed':>4} {'lifeguard':>9} {'suspicions':>10} {'false DEAD':>10} {'refutations':>11}")
    for r in rows:
        print(
            f"{r['seed']:>4} {r['lifeguard']!s:>9} {r['false_suspicions']:>10} "
            f"{r['false_deaths']:>10} {r['refutations']:>11}"
        )


if __name__ == "__main__":
    main()
