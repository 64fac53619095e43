"""What one served message costs a process that is otherwise idle: CPU per request answered
over the stream channel (sealed WebSocket over TCP, as voters answer lease rounds) and per
datagram answered (sealed UDP), at a paced rate, measured in the serving process and in the
asking one. Prints JSON, then a table.

This is the floor under a voter's cost: a voter answers every leader's renewal, so at N
leaders renewing every second it serves N requests a second, whatever the lease protocol
does with them.

    python -m benchmarks.served_floor --rates 5 25 --seconds 10 --runs 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
from typing import Any

import trio

from swimmesh.crypto import Keyring, Sealer
from swimmesh.member import Address
from swimmesh.transport.net import NetTransport
from swimmesh.transport.sealed import SealedTransport

KEY = bytes(range(32))
REQUEST = b"q" * 400
"""About a 10-scope renewal round, encoded."""
REPLY = b"r" * 400


def _sealed(inner: NetTransport) -> SealedTransport:
    ring = Keyring([KEY])
    return SealedTransport(inner, Sealer(ring), Sealer(ring))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _serve(mode: str, ready: Any, commands: Any, readings: Any) -> None:
    """The answering process: replies to every request or datagram, reads its own CPU when
    told to (``mark``), stops on ``stop``."""

    async def main() -> None:
        async with NetTransport.open(("127.0.0.1", 0)) as net, trio.open_nursery() as nursery:
            sealed = _sealed(net)

            async def answer(source: Address, data: bytes) -> bytes:
                return REPLY

            async def echo() -> None:
                while True:
                    source, _ = await sealed.receive()
                    await sealed.send(source, REPLY)

            if mode == "stream":
                sealed.serve_streams(answer)
            else:
                nursery.start_soon(echo)
            ready.put(net.local_address)
            while True:
                command = await trio.to_thread.run_sync(commands.get)
                if command != "mark":
                    break
                readings.put(_cpu())
            nursery.cancel_scope.cancel()

    trio.run(main)


def measure(mode: str, rate: float, seconds: float) -> dict[str, float]:
    """One paced run: the server's and the client's CPU per second, and per message."""
    ctx = mp.get_context("fork")
    ready, commands, readings = ctx.Queue(), ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=_serve, args=(mode, ready, commands, readings), daemon=True)
    server.start()
    try:
        address = ready.get(timeout=30)

        async def main() -> dict[str, float]:
            async with NetTransport.open(("127.0.0.1", 0)) as net:
                sealed = _sealed(net)

                async def one() -> None:
                    if mode == "stream":
                        await sealed.request(address, REQUEST)
                    else:
                        with trio.move_on_after(1.0):
                            await sealed.send(address, REQUEST)
                            await sealed.receive()

                for _ in range(20):  # warm up: the connection, the caches
                    await one()
                commands.put("mark")
                served0 = await trio.to_thread.run_sync(readings.get)
                asked0, start, sent = _cpu(), trio.current_time(), 0
                while trio.current_time() - start < seconds:
                    if rate > 0:
                        await one()
                        sent += 1
                        await trio.sleep(1 / rate)
                    else:
                        await trio.sleep(seconds)
                took = trio.current_time() - start
                asked = _cpu() - asked0
                commands.put("mark")
                served = await trio.to_thread.run_sync(readings.get) - served0
                per = sent / took
                return {
                    "rate": per,
                    "server_ms_per_s": served * 1000 / took,
                    "client_ms_per_s": asked * 1000 / took,
                }

        return trio.run(main)
    finally:
        commands.put("stop")
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
            server.join()


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"seconds": args.seconds, "runs": args.runs, "results": []}
    for mode in args.modes:
        idle = [measure(mode, 0, args.seconds) for _ in range(args.runs)]
        idle_server = statistics.median(r["server_ms_per_s"] for r in idle)
        idle_client = statistics.median(r["client_ms_per_s"] for r in idle)
        for rate in args.rates:
            runs = [measure(mode, rate, args.seconds) for _ in range(args.runs)]
            server = [(r["server_ms_per_s"] - idle_server) / r["rate"] for r in runs]
            client = [(r["client_ms_per_s"] - idle_client) / r["rate"] for r in runs]
            out["results"].append(
                {
                    "mode": mode,
                    "rate": rate,
                    "idle_server_ms_per_s": idle_server,
                    "server_ms_per_s": statistics.median(r["server_ms_per_s"] for r in runs),
                    "server_ms_per_message": _spread(server),
                    "client_ms_per_message": _spread(client),
                }
            )
    return out


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def table(result: dict[str, Any]) -> str:
    lines = [
        "| mode | paced rate /s | server CPU ms/s (idle) | server ms per message: median (range)"
        " | client ms per message: median (range) |",
        "|---|---|---|---|---|",
    ]
    for r in result["results"]:
        s, c = r["server_ms_per_message"], r["client_ms_per_message"]
        server = f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"
        client = f"{c['median']:.3f} ({c['min']:.3f}-{c['max']:.3f})"
        lines.append(
            f"| {r['mode']} | {r['rate']:g} | {r['server_ms_per_s']:.1f}"
            f" ({r['idle_server_ms_per_s']:.1f}) | {server} | {client} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", default=["stream", "datagram"])
    parser.add_argument("--rates", nargs="+", type=float, default=[5.0, 25.0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    print()
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
