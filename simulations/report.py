"""A result as people read it: summary tables (rich) and the JSON file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def to_json(result: Mapping[str, Any]) -> str:
    """The result as JSON, keys sorted: equal results give equal bytes."""
    return json.dumps(result, indent=2, sort_keys=True) + "\n"


def json_path(out: Path, result: Mapping[str, Any]) -> Path:
    return out / f"{result['scenario']}-seed{result['seed']}.json"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) if value else "none"
    return str(value)


def tables(result: Mapping[str, Any]) -> list[Table]:
    """One table of the scalar figures, then one per list of rows (failures, sweep, ...)."""
    opts = result["options"]
    title = (
        f"{result['scenario']}: {opts['nodes'] if opts['nodes'] is not None else 'matrix'} "
        f"nodes, seed {result['seed']}, preset {opts['preset']}"
    )
    main = Table(title=title, show_header=True, header_style="bold")
    main.add_column("figure")
    main.add_column("value")
    lists: list[Table] = []
    for key, value in result["figures"].items():
        if isinstance(value, list) and value and isinstance(value[0], Mapping):
            lists.append(_rows(key, value))
        elif (
            isinstance(value, Mapping)
            and value
            and all(isinstance(v, Mapping) for v in value.values())
        ):
            for sub, inner in value.items():
                main.add_row(f"{key.replace('_', ' ')}: {sub}", _cell(inner))
        else:
            main.add_row(key.replace("_", " "), _cell(value))
    if "lease_store" in result:
        main.add_row("lease store", result["lease_store"])
    if "safety" in result:
        safety = result["safety"]
        main.add_row("safety checker", _cell(safety.get("violation") or safety["verdict"]))
    return [main, *lists] if main.row_count else lists


def _rows(key: str, value: list[Mapping[str, Any]]) -> Table:
    """A list of rows as a table; a few wide rows (one per mode) turned on their side."""
    table = Table(title=key.replace("_", " "), header_style="bold")
    columns = list(value[0])
    if len(columns) > 6 and len(value) <= 4:
        table.add_column("figure")
        for i in range(len(value)):
            table.add_column(str(i + 1))
        for c in columns:
            table.add_row(c.replace("_", " "), *(_cell(row.get(c)) for row in value))
        return table
    for c in columns:
        table.add_column(c.replace("_", " "))
    for row in value:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    return table


def print_tables(result: Mapping[str, Any], console: Console) -> None:
    for table in tables(result):
        console.print(table)
