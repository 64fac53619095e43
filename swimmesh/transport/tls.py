"""TLS and mTLS policy for the stream channel: CA bundle, client certificates, pinned peer
names or certificate fingerprints, a minimum version, and certificate reload without restart."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path
from typing import Any

import attrs

from .base import TransportError

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _paths(value: Any) -> Path | None:
    return None if value is None else Path(value)


def _fingerprints(values: Any) -> tuple[str, ...]:
    return tuple(str(v).replace(":", "").lower() for v in values)


@attrs.frozen
class TlsPolicy:
    """How stream connections are secured. ``cert_file``/``key_file`` identify this node;
    ``ca_file`` verifies peers; with ``require_client_cert`` the server demands one (mTLS)."""

    cert_file: Path | None = attrs.field(default=None, converter=_paths)
    key_file: Path | None = attrs.field(default=None, converter=_paths)
    ca_file: Path | None = attrs.field(default=None, converter=_paths)
    require_client_cert: bool = False
    allowed_names: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    allowed_fingerprints: tuple[str, ...] = attrs.field(default=(), converter=_fingerprints)
    min_version: str = attrs.field(default="1.2")
    insecure_skip_verify: bool = False
    """Accept any peer certificate (development only; pinning still applies)."""

    @min_version.validator
    def _check_version(self, _attr: Any, value: str) -> None:
        if value not in _VERSIONS:
            raise ValueError(f"min_version: expected one of {sorted(_VERSIONS)}, got {value!r}")

    def _stamp(self) -> tuple[float, ...]:
        return tuple(
            p.stat().st_mtime if p is not None and p.exists() else 0.0
            for p in (self.cert_file, self.key_file, self.ca_file)
        )

    def context(self, server_side: bool) -> ssl.SSLContext:
        """A context built from the files as they are now (cached until a file changes)."""
        stamp = (server_side, *self._stamp())
        cache: dict[tuple[Any, ...], ssl.SSLContext] = _CACHE.setdefault(id(self), {})
        ctx = cache.get(stamp)
        if ctx is None:
            cache.clear()
            ctx = cache[stamp] = self._build(server_side)
        return ctx

    def _build(self, server_side: bool) -> ssl.SSLContext:
        purpose = ssl.Purpose.CLIENT_AUTH if server_side else ssl.Purpose.SERVER_AUTH
        ctx = ssl.create_default_context(purpose)
        ctx.minimum_version = _VERSIONS[self.min_version]
        ctx.check_hostname = False  # peers are addressed by IP; names are pinned below
        if self.cert_file is not None:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.ca_file is not None:
            ctx.load_verify_locations(self.ca_file)
        if server_side:
            ctx.verify_mode = ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_OPTIONAL
            if self.ca_file is None:
                ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.verify_mode = ssl.CERT_NONE if self.insecure_skip_verify else ssl.CERT_REQUIRED
        return ctx

    def check_peer(self, ssl_object: Any) -> None:
        """Enforce name and fingerprint pinning on an established connection."""
        der = ssl_object.getpeercert(binary_form=True)
        if self.allowed_fingerprints:
            if der is None:
                raise TransportError("peer presented no certificate")
            if hashlib.sha256(der).hexdigest() not in self.allowed_fingerprints:
                raise TransportError("peer certificate fingerprint is not allowed")
        if self.allowed_names:
            names = _cert_names(ssl_object.getpeercert() or {})
            if not names & set(self.allowed_names):
                raise TransportError(f"peer certificate names {sorted(names)} are not allowed")


_CACHE: dict[int, dict[tuple[Any, ...], ssl.SSLContext]] = {}


def _cert_names(cert: dict[str, Any]) -> set[str]:
    names = {value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.add(value)
    return names


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint (hex) of a PEM certificate, as ``allowed_fingerprints`` expects."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem.decode())).hexdigest()
