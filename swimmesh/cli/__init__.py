"""The ``swimmesh`` command line.

``agent`` runs a node; ``demo`` starts a local mesh of agents; ``mesh ...`` reads an agent's
control plane; ``keys`` and ``tls`` manage secrets; ``simulate`` runs scenarios.
Exit codes: 0 ok, 1 error, 2 timeout. Rooms: ``parser`` (flags and ``main``), ``commands``,
``demo``, ``http`` (requests and the stream follower), ``render`` (tables).
"""

from .base import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_TIMEOUT, CliError
from .parser import build_parser, main
from .render import leaders_table, lease_health_table, peers_table

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "CliError",
    "build_parser",
    "leaders_table",
    "lease_health_table",
    "main",
    "peers_table",
]
