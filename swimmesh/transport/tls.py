"""TLS and mTLS policy for the stream channel: CA bundle, client certificates, pinned peer
names or certificate fingerprints, a minimum version, and certificate reload without restart."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path
from typing import Any

import attrs

from ..config import ConfigError
from .base import TransportError

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _paths(value: Any) -> Path | None:
    return None if value is None else Path(value)


def _fingerprints(values: Any) -> tuple[str, ...]:
    return tuple(str(v).replace(":", "").lower() for v in values)


class TlsFileError(ConfigError):
    """A TLS file that cannot be used: missing, unreadable, not PEM, or a key that does not
    belong to its certificate. ``field`` is ``cert_file``, ``key_file`` or ``ca_file``."""

    def __init__(self, field: str, path: Path | str, reason: str) -> None:
        super().__init__(f"{field}: {path}: {reason}")
        self.field = field
        self.path = str(path)
        self.reason = reason


def check_tls_files(
    cert_file: Path | str | None = None,
    key_file: Path | str | None = None,
    ca_file: Path | str | None = None,
) -> None:
    """Load every file as a TLS context would, and raise :class:`TlsFileError` naming the first
    one that cannot be used. A handshake would otherwise fail only when a peer connects."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for field, path in (("cert_file", cert_file), ("key_file", key_file), ("ca_file", ca_file)):
        if path is None:
            continue
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise TlsFileError(field, path, f"cannot read it: {exc.strerror or exc}") from None
    if key_file is not None and cert_file is None:
        raise TlsFileError("key_file", key_file, "a private key needs its certificate file too")
    if cert_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(cert_file))
        except ssl.SSLError:
            raise TlsFileError("cert_file", cert_file, "holds no PEM certificate") from None
        try:
            ctx.load_cert_chain(str(cert_file), None if key_file is None else str(key_file))
        except ssl.SSLError as exc:
            if key_file is None:
                why = "holds no private key for its certificate: name the key file too"
                raise TlsFileError("cert_file", cert_file, why) from None
            if "KEY_VALUES_MISMATCH" in str(exc):
                why = f"is not the key of the certificate in {cert_file}"
            else:
                why = f"holds no usable PEM private key ({exc.reason or exc})"
            raise TlsFileError("key_file", key_file, why) from None
    if ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca_file))
        except ssl.SSLError:
            raise TlsFileError("ca_file", ca_file, "holds no PEM certificate") from None


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

    def check(self) -> None:
        """Raise :class:`TlsFileError` unless every file loads and the key fits the certificate."""
        check_tls_files(self.cert_file, self.key_file, self.ca_file)

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
