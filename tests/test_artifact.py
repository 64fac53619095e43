"""The suite tests the installed wheel, not the source tree."""

from __future__ import annotations

import pathlib

import leadership
import peerhealth
import simulations
import swimmesh


def test_packages_come_from_site_packages() -> None:
    for module in (swimmesh, leadership, peerhealth, simulations):
        path = pathlib.Path(module.__file__ or "")
        assert "site-packages" in path.parts, f"{module.__name__} imported from {path}"


def test_typed_markers_ship() -> None:
    for module in (swimmesh, leadership, peerhealth):
        assert (pathlib.Path(module.__file__ or "").parent / "py.typed").exists()
