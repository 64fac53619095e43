"""Tables and lines the CLI prints (``--format table``); JSON output is the server's document."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def render_rows(rows: list[list[str]]) -> str:
    """Left-aligned columns, as wide as their widest cell, two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def utc(text: str, fmt: str) -> str:
    """An RFC 3339 timestamp reformatted in UTC (the text itself if it is not one)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return str(text)
    return moment.astimezone(UTC).strftime(fmt)


def leaders_table(doc: dict[str, Any]) -> str:
    """OmniRelay's ``mesh leaders status`` snapshot: fixed columns, rows sorted by scope."""
    lines = [f"Generated at: {doc.get('generatedAt', '')}", ""]
    tokens = sorted(doc.get("tokens") or [], key=lambda t: str(t.get("scope", "")))
    if not tokens:
        return "\n".join([*lines, "No active leaders."])
    widths = (32, 20, 6, 6, 24, 12)
    header = ("Scope", "Leader", "Term", "Fence", "Expires (UTC)", "Kind")
    lines.append("".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for t in tokens:
        cells = (
            str(t.get("scope", "")),
            str(t.get("leaderId", "")),
            str(t.get("term", "")),
            str(t.get("fenceToken", "")),
            utc(str(t.get("expiresAt", "")), "%Y-%m-%d %H:%M:%SZ"),
            str(t.get("scopeKind", "")),
        )
        lines.append("".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


PEER_COLUMNS = ["Node", "Address", "Status", "Inc", "RTT (ms)"]
PEER_METADATA_COLUMNS = ["Role", "Cluster", "Region", "Version", "Tags"]


def peers_table(doc: dict[str, Any], *, metadata: bool = True) -> str:
    """``/control/peers`` as a table; ``metadata=False`` keeps the first five columns."""
    rows = [PEER_COLUMNS + (PEER_METADATA_COLUMNS if metadata else [])]
    for p in doc.get("peers", []):
        md = p.get("metadata") or {}
        labels = md.get("labels") or {}
        rtt = p.get("rttMs")
        row = [
            str(p.get("nodeId")),
            str(p.get("address", md.get("endpoint", ""))),
            str(p.get("status")),
            str(p.get("incarnation", "")),
            "-" if rtt is None else f"{rtt:.2f}",
        ]
        if metadata:
            row += [
                md.get("role") or "-",
                md.get("clusterId") or "-",
                md.get("region") or "-",
                md.get("meshVersion") or "-",
                ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            ]
        rows.append(row)
    return render_rows(rows)


def lease_health_table(doc: dict[str, Any]) -> str:
    rows = [
        [
            "Peer",
            "Healthy",
            "Last heartbeat",
            "Last disconnect",
            "Assigned",
            "Pending",
            "Leases",
            "Role",
            "Reason",
        ]
    ]
    for p in doc.get("peers", []):
        md = p.get("metadata") or {}
        rows.append(
            [
                str(p["peerId"]),
                "yes" if p.get("isHealthy") else "NO",
                p.get("lastHeartbeat", "-"),
                p.get("lastDisconnect", "-"),
                str(p.get("activeAssignments", 0)),
                str(p.get("pendingReassignments", 0)),
                str(len(p.get("activeLeases", []))),
                md.get("mesh.role", "-"),
                md.get("disconnect.reason", "-"),
            ]
        )
    s = doc.get("summary", {})
    footer = (
        f"\n{s.get('eligiblePeers', 0)} eligible, {s.get('unhealthyPeers', 0)} unhealthy, "
        f"{s.get('pendingReassignments', 0)} pending reassignments"
    )
    errors = "".join(
        f"\nprovider {e['provider']} failed: {e['error']}" for e in doc.get("providerErrors", [])
    )
    return render_rows(rows) + footer + errors


def signal_line(doc: dict[str, Any]) -> str:
    state = "ACTIVE" if doc["isActive"] else "inactive"
    return (
        f"{doc['observedAt']}  {state:<8} pending={doc['pendingCount']} "
        f"high={doc['highWatermark']} low={doc['lowWatermark']}"
    )


def event_line(doc: dict[str, Any]) -> str:
    """OmniRelay's watch line: ``[HH:mm:ss] KIND scope=... leader=... term=... fence=...``."""
    token = doc.get("token") or {}
    return (
        f"[{utc(str(doc.get('occurredAt', '')), '%H:%M:%S')}] "
        f"{str(doc.get('eventKind', '')).upper()} scope={doc.get('scope')} "
        f"leader={doc.get('leaderId') or '-'} term={token.get('term', '-')} "
        f"fence={token.get('fenceToken', '-')} "
        f"expires={utc(str(token.get('expiresAt', '-')), '%H:%M:%SZ')} "
        f"reason={doc.get('reason', '')}"
    )


def lifeguard_table(rows: list[dict[str, Any]]) -> str:
    """The lifeguard comparison with labelled rows and a legend for its columns."""
    first = rows[0]
    table = [["Mode", "False suspicions", "False deaths", "Refutations"]]
    for r in rows:
        table.append(
            [
                "Lifeguard" if r["lifeguard"] else "plain SWIM",
                str(r["false_suspicions"]),
                str(r["false_deaths"]),
                str(r["refutations"]),
            ]
        )
    return "\n".join(
        [
            f"{first['nodes']} nodes, {first['seconds']:g} s of virtual time, "
            f"{first['loss']:.0%} packet loss, {first['stalls']} node stalls",
            "",
            render_rows(table),
            "",
            "False suspicions: healthy nodes suspected; false deaths: healthy nodes declared "
            "Dead; refutations: suspicions a healthy node answered by raising its incarnation.",
        ]
    )
