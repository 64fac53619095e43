"""``SwimmeshError``: the one root of every error swimmesh raises on purpose.

Catch it to handle any swimmesh failure at once; each subclass keeps its other base (e.g.
``ValueError`` for bad input), so code that catches those still works. ``leadership`` and
``peerhealth`` keep roots of their own: they never import swimmesh.
"""

from __future__ import annotations


class SwimmeshError(Exception):
    """Root of swimmesh's errors: a decode, config, key, join, request, transport or agent error."""
