"""The proxy's certificate authority: loaded from files or generated once, minting per-host certificates.

Leaf certificates follow what mitmproxy does (issuer = CA subject, SAN for the host,
authority key id equal to the CA's subject key id, validity starting two days back for skewed
clocks), with one private key shared by every leaf of this process (minting then costs a
signature, not a key generation). Each host's TLS context is built once and kept.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aibridge.config import ConfigError

CA_NAME = "AI Bridge Proxy CA"
CA_VALIDITY = dt.timedelta(days=10 * 365)
LEAF_VALIDITY = dt.timedelta(days=199)       # under the 398 days browsers and Apple allow
CLOCK_SKEW = dt.timedelta(days=2)
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class CertificateAuthority:
    def __init__(self, cert: x509.Certificate, key: SigningKey, cert_path: Path) -> None:
        self.cert = cert
        self.cert_path = cert_path
        self._key = key
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        self._contexts: dict[str, ssl.SSLContext] = {}

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def load(cls, cert_file: str, key_file: str) -> CertificateAuthority:
        """The administrator's CA (--aibridge-proxy-cert-file / -key-file)."""
        cert = read_certificate(cert_file, "--aibridge-proxy-cert-file")
        try:
            key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        except OSError as exc:
            raise ConfigError(f"--aibridge-proxy-key-file: cannot read {key_file}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"--aibridge-proxy-key-file: {key_file} is not an unencrypted PEM private key "
                              f"({exc})") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError(f"--aibridge-proxy-key-file: {key_file}: only RSA and EC keys are supported")
        if _spki(key.public_key()) != _spki(cert.public_key()):
            raise ConfigError(f"--aibridge-proxy-key-file: {key_file} is not the key of {cert_file}")
        return cls(cert, key, Path(cert_file))

    @classmethod
    def load_or_generate(cls, directory: Path) -> tuple[CertificateAuthority, bool]:
        """The CA kept in ``directory`` (made on first use); True when it was just generated."""
        cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
        if cert_path.exists() or key_path.exists():
            return cls.load(str(cert_path), str(key_path)), False
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _ca_certificate(key)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        _write_private(key_path, key_pem)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(cert, key, cert_path), True

    def server_context(self, host: str) -> ssl.SSLContext:
        """TLS (≥ 1.2, HTTP/1.1) presenting a certificate for ``host`` signed by this CA."""
        context = self._contexts.get(host)
        if context is None:
            context = self._contexts[host] = self._new_context(host)
        return context

    def _new_context(self, host: str) -> ssl.SSLContext:
        cert = self.mint(host)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        # ssl only loads certificates from files: a private directory that lives for a moment.
        with tempfile.TemporaryDirectory(prefix="aibridge-proxy-") as tmp:
            chain, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            _write_private(key, self._leaf_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            context.load_cert_chain(chain, key)
        return context

    def mint(self, host: str) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            san = x509.DNSName(host)
        try:
            ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:       # an older CA without one
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:63])]))
            .issuer_name(self.cert.subject)
            .public_key(self._leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now - CLOCK_SKEW + LEAF_VALIDITY)
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(aki, critical=False)
        )
        return builder.sign(self._key, hashes.SHA256())


def read_certificate(path: str, option: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{option}: {path} is not a PEM certificate") from None


def _ca_certificate(key: SigningKey) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AI Bridge")])
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now - CLOCK_SKEW + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _write_private(path: Path, data: bytes) -> None:
    """Readable by this user only, from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)
