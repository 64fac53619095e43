"""False-positive scenario of the Lifeguard paper: loss plus nodes that stall.

Every node stays alive the whole time, so every DEAD event is a false positive and every
SUSPECT event a false suspicion. Run with ``python -m simulations.lifeguard``.
"""

from __future__ import annotations

import argparse
import json
import random

import attrs
import trio
import trio.testing

from swimmesh import MemberEventKind, MemberStatus
from swimmesh.testing import Cluster, EventLog, MemoryNetwork, seed_scheduler, wait_for


@attrs.frozen
class Outcome:
    lifeguard: bool
    nodes: int
    seconds: float
    loss: float
    stalls: int
    false_suspicions: int
    false_deaths: int
    refutations: int
    nodes_ever_declared_dead: list[str]


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
    """Form a mesh, then run ``seconds`` of loss and random stalls of ``stallers`` nodes."""
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
                net.pause((rng.choice(victims), 7946), stall)
                stalls += 1
            net.set_loss(0.0)
            watchers.cancel_scope.cancel()
        refutations = sum(n.stats.refutations for n in cluster.live())
    deaths = log.of(MemberEventKind.DEAD)
    return Outcome(
        lifeguard=lifeguard,
        nodes=nodes,
        seconds=seconds,
        loss=loss,
        stalls=stalls,
        false_suspicions=len(log.of(MemberEventKind.SUSPECT)),
        false_deaths=len(deaths),
        refutations=refutations,
        nodes_ever_declared_dead=sorted({ev.member.name for _, _, ev in deaths}),
    )


def simulate(lifeguard: bool, **kwargs: object) -> Outcome:
    """Run one scenario in virtual time (a MockClock that jumps to the next timer)."""
    seed_scheduler(int(kwargs.get("seed", 1)))  # type: ignore[call-overload]

    async def main() -> Outcome:
        return await run(lifeguard=lifeguard, **kwargs)  # type: ignore[arg-type]

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
