"""Talking to an agent's control plane: one request, or a stream followed line by line."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

import httpx

from .base import EXIT_OK, EXIT_TIMEOUT, CliError


def call(
    method: str, url: str, path: str, timeout: float, token: str | None = None, body: Any = None
) -> Any:
    """One request; the JSON answer, or a ``CliError`` that says what went wrong. A key
    operation's partial failure (HTTP 500 with ``failed``) is returned for the caller to show."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, json=body, headers=headers, timeout=timeout
        )
    except httpx.TimeoutException:
        raise CliError(f"timed out after {timeout:g}s talking to {url}", EXIT_TIMEOUT) from None
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {url}: {exc}") from None
    try:
        data = response.json() if response.content else None
    except ValueError:
        raise CliError(
            f"{url}{path} answered {response.status_code} with non-JSON content"
        ) from None
    if response.status_code >= 400 and not (isinstance(data, dict) and "failed" in data):
        message = data.get("error") if isinstance(data, dict) else response.text
        raise CliError(f"{url}{path}: HTTP {response.status_code}: {message}")
    return data


def token(args: argparse.Namespace) -> str | None:
    """``--token``, else ``$SWIMMESH_CONTROL_TOKEN``."""
    given: str | None = args.token or os.environ.get("SWIMMESH_CONTROL_TOKEN")
    return given


def follow(
    args: argparse.Namespace,
    path: str,
    params: dict[str, str],
    parse: Callable[[str], Any],
    render: Callable[[Any], str],
) -> int:
    """Print each document of a streamed response until it ends or Ctrl+C, both a normal end
    (exit 0); ``parse`` turns a line into a document (None to skip it)."""
    url = args.url.rstrip("/") + path
    try:
        with httpx.stream(
            "GET", url, params=params, timeout=httpx.Timeout(args.timeout, read=None)
        ) as response:
            if response.status_code >= 400:
                raise CliError(f"{url}: HTTP {response.status_code}")
            for line in response.iter_lines():
                doc = parse(line)
                if doc is not None:
                    print(json.dumps(doc) if args.format == "json" else render(doc), flush=True)
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl+C is how a watch ends
    except httpx.TimeoutException:
        raise CliError(f"timed out connecting to {args.url}", EXIT_TIMEOUT) from None
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {args.url}: {exc}") from None
    return EXIT_OK
