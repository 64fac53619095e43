"""Development certificates: a CA and node certificates, so mTLS can be tried in a minute."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .crypto import save_atomic
from .errors import SwimmeshError


class DevCertError(SwimmeshError, ValueError):
    """A CA that is missing, unreadable or would be overwritten; the message says the fix."""


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def create_ca(
    out: Path, name: str = "swimmesh dev CA", days: int = 3650, *, force: bool = False
) -> tuple[Path, Path]:
    """Write ``ca.pem`` and ``ca-key.pem`` (0600) into ``out``. An existing CA is kept unless
    ``force``: every certificate it signed would stop verifying against a new one."""
    existing = [p for p in (out / "ca.pem", out / "ca-key.pem") if p.exists()]
    if existing and not force:
        raise DevCertError(
            f"{existing[0]} exists: a new CA would invalidate every certificate the old one "
            "signed; give --force to replace it, or --out another directory"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = out / "ca.pem", out / "ca-key.pem"
    save_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    save_atomic(key_path, _key_pem(key))
    return cert_path, key_path


def create_cert(
    ca_dir: Path, name: str, out: Path, hosts: list[str] | None = None, days: int = 825
) -> tuple[Path, Path]:
    """Write ``NAME.pem`` and ``NAME-key.pem``: a node certificate for server and client use,
    signed by the CA in ``ca_dir``, with ``name`` and ``hosts`` (DNS names or IPs) as SANs."""
    ca_cert_path, ca_key_path = ca_dir / "ca.pem", ca_dir / "ca-key.pem"
    missing = [str(p) for p in (ca_cert_path, ca_key_path) if not p.is_file()]
    if missing:
        raise DevCertError(
            f"no CA in {ca_dir} ({' and '.join(missing)} missing): create one first with "
            f"`swimmesh tls ca --out {ca_dir}`, or point --ca-dir at the directory that holds it"
        )
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    except ValueError as exc:
        raise DevCertError(f"cannot read the CA in {ca_dir}: {exc}") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise DevCertError("the CA key is not an EC key made by `swimmesh tls ca`")
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    for host in hosts or ["localhost", "127.0.0.1"]:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = out / f"{name}.pem", out / f"{name}-key.pem"
    save_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    save_atomic(key_path, _key_pem(key))
    return cert_path, key_path
