"""Promised terms that survive a voter's restart (DESIGN.md 5 rule 6).

Without them fences go backwards: a restarted voter would grant a term it already promised to
someone else. A voter saves on every new promised term (one fsync), never on a renewal. Grant
expiries are not kept; a restarted voter sits out one maximum lease instead.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import attrs

from .membership import VoterConfig, VoterConfigError

log = logging.getLogger("leadership.quorum")


class PromiseFileError(OSError):
    """The promise file cannot be read or trusted; starting empty could regress fences."""


def _copy_terms(value: Mapping[str, int]) -> dict[str, int]:
    return dict(value)


@attrs.frozen
class PromiseState:
    """What a voter keeps across restarts: the highest promised term per scope and its config."""

    terms: Mapping[str, int] = attrs.field(factory=dict, converter=_copy_terms)
    config: VoterConfig | None = None
    committed_epoch: int = 0
    """The highest configuration epoch this voter received a commit for (a prepared-only
    configuration must be committed before the voter prepares the next one)."""
    longest: float = 0.0
    """The longest lease this voter may ever have granted (its ``max_duration`` at any time):
    a restart sits out this long, even if the lease was shortened meanwhile."""


class PromiseStore(Protocol):
    def load(self) -> PromiseState: ...

    def save(self, state: PromiseState) -> None:
        """Make ``state`` durable before returning."""


class MemoryPromises:
    """Promises kept in memory across "restarts" of voters in one process (tests, simulations)."""

    def __init__(self, state: PromiseState | None = None) -> None:
        self._state = state or PromiseState()
        self.saves = 0

    def load(self) -> PromiseState:
        return self._state

    def save(self, state: PromiseState) -> None:
        self._state = state
        self.saves += 1


class FilePromises:
    """Promises in a small JSON file, replaced atomically (write, fsync, rename, fsync the dir)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.saves = 0

    def load(self) -> PromiseState:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return PromiseState()
        except OSError as exc:
            raise PromiseFileError(f"cannot read promised terms from {self.path}: {exc}") from exc
        try:
            data = json.loads(raw)
            terms = data["terms"]
            if not isinstance(terms, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in terms.items()
            ):
                raise ValueError("terms must map scope ids to non-negative integers")
            config = None
            committed = int(data.get("committedEpoch", 0))
            longest = float(data.get("longestLease", 0.0))
            if data.get("config") is not None:
                epoch, voters = data["config"]["epoch"], data["config"]["voters"]
                config = VoterConfig(int(epoch), frozenset(str(v) for v in voters))
        except (ValueError, KeyError, TypeError, VoterConfigError) as exc:
            raise PromiseFileError(
                f"promised terms in {self.path} are damaged ({exc}); refusing to start empty "
                "because fences could go backwards; restore the file or remove this voter "
                "from the configuration and add it back"
            ) from exc
        return PromiseState(
            terms=terms, config=config, committed_epoch=committed, longest=longest
        )

    def save(self, state: PromiseState) -> None:
        doc: dict[str, object] = {
            "terms": dict(state.terms),
            "committedEpoch": state.committed_epoch,
            "longestLease": state.longest,
        }
        if state.config is not None:
            doc["config"] = {"epoch": state.config.epoch, "voters": sorted(state.config.voters)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.saves += 1


class KnownConfigFile:
    """The newest voter configuration a node has learned, kept in its data directory so that
    after a restart it asks today's voters, not the bootstrap ones (which may all be gone).
    Advisory: a missing or damaged file only means starting from the configured voters."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> VoterConfig | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return VoterConfig(int(data["epoch"]), frozenset(str(v) for v in data["voters"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, VoterConfigError) as exc:
            log.warning(
                "ignored the stored voter configuration in %s (%s); starting from the "
                "configured voters",
                self.path,
                exc,
                extra={"path": str(self.path), "error": str(exc)},
            )
            return None

    def save(self, config: VoterConfig) -> None:
        doc = {"epoch": config.epoch, "voters": sorted(config.voters)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(doc), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning(
                "could not store the voter configuration in %s (%s)",
                self.path,
                exc,
                extra={"path": str(self.path), "error": str(exc)},
            )
