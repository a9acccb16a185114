"""AI Bridge Proxy end to end: tools that only know HTTPS_PROXY and a CA go through the bridge.

No DNS and no internet: a client of the proxy only ever dials the proxy, and the proxy never
dials a decrypted host (its requests go to the configured providers, here the fake upstream on
127.0.0.1). Tunnels go to TLS servers of the test's own on random loopback addresses, port 443.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import random
import signal
import ssl
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aibridge.config import load_settings
from aibridge.store import users as user_store
from aibridge.store.db import create_engine
from tests.e2e.clients import INSTALL_TIMEOUT, client_env, npm_clients
from tests.e2e.conftest import bridge_env
from tests.e2e.records import ids, latest
from tests.e2e.test_observability import OTLPReceiver
from tests.e2e.test_observability import attributes as span_attributes
from tests.fakes.upstream import FakeUpstream, get_scenario
from tests.harness import Client, Database, ServerProcess, base_env, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- helpers

def self_signed(name: str, directory: Path, ca: bool = False) -> tuple[Path, Path, x509.Certificate]:
    """A certificate for ``name`` (DNS name or IP) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    try:
        import ipaddress
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        san = x509.DNSName(name)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.SubjectAlternativeName([san]), critical=False)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, cert


def random_loopback() -> str:
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


class LoopbackTLS:
    """A TLS server on a random loopback address, port 443, that echoes what it gets after 'echo:'."""

    def __init__(self, directory: Path) -> None:
        self.address = random_loopback()
        self.cert_path, self.key_path, self.cert = self_signed(self.address, directory)
        self.server: asyncio.Server | None = None

    async def start(self) -> LoopbackTLS:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        self.server = await asyncio.start_server(self._echo, self.address, 443, ssl=context)
        return self

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
            line = await reader.readline()
            writer.write(b"echo:" + line)
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def basic(token: str, user: str = "coder") -> dict[str, str]:
    return {"Proxy-Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


async def connect(proxy: tuple[str, int], target: str, headers: dict[str, str] | None = None,
                  proxy_tls: ssl.SSLContext | None = None) -> tuple[int, bytes, asyncio.StreamReader,
                                                                     asyncio.StreamWriter]:
    """Send CONNECT target to the proxy; returns (status, head+body, reader, writer)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        *proxy, ssl=proxy_tls, server_hostname="127.0.0.1" if proxy_tls else None), 10)
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write((head + "\r\n").encode())
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status = int(answer.split(b" ", 2)[1])
    if status != 200:
        answer += await asyncio.wait_for(reader.read(), 10)
    return status, answer, reader, writer


async def tls_inside(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext,
                     name: str) -> x509.Certificate:
    """Start TLS inside a CONNECT tunnel; returns the certificate the far end presented."""
    await asyncio.wait_for(writer.start_tls(context, server_hostname=name), 10)
    sslobj = writer.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def trusting(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


# ---------------------------------------------------------------- fixtures

@dataclass
class Proxied:
    server: ServerProcess
    fake: FakeUpstream
    proxy_port: int
    token: str               # member "pat"
    ca_path: Path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.proxy_port)

    @property
    def proxy_url(self) -> str:
        return f"http://coder:{self.token}@127.0.0.1:{self.proxy_port}"

    def owner(self) -> Client:
        return Client(self.server.url, self.server.admin_token)


def proxy_env(fake: FakeUpstream, port: int, **extra: str) -> dict[str, str]:
    return {**bridge_env(fake), "CODER_AIBRIDGE_PROXY_ENABLED": "true",
            "CODER_AIBRIDGE_PROXY_LISTEN_ADDR": f"127.0.0.1:{port}", "CODER_PROMETHEUS_ENABLE": "true",
            "CODER_PROMETHEUS_ADDRESS": f"127.0.0.1:{free_port()}", **extra}


@pytest.fixture(scope="module")
async def proxied(module_database: Database) -> AsyncIterator[Proxied]:
    fake = FakeUpstream()
    await fake.start()
    port = free_port()
    server = await ServerProcess(module_database, env=proxy_env(fake, port)).start()
    try:
        await wait_listening(port)
        yield Proxied(server, fake, port, server.create_user("pat"), module_database.data_dir / "proxy" / "ca.pem")
    finally:
        server.stop()
        await fake.stop()


async def wait_listening(port: int) -> None:
    async def check() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True
    assert await wait_for(check, 10), f"the proxy is not listening on {port}"


async def run_sdk(proxied: Proxied, sdk: str, model: str, prompt: str, **env: str) -> dict[str, Any]:
    """The SDK in its own process, configured only by the environment a developer would set
    (in a thread: the fake upstream answers on this test's event loop)."""
    clean = {k: v for k, v in base_env().items()
             if k.upper() not in ("NO_PROXY", "HTTP_PROXY", "ALL_PROXY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL")}
    clean.update({"HTTPS_PROXY": proxied.proxy_url, "SSL_CERT_FILE": str(proxied.ca_path),
                  "OPENAI_API_KEY": "sk-developers-own-openai-key", "ANTHROPIC_API_KEY": "sk-ant-developers-own",
                  **env})
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "tests.e2e.proxy_sdk", sdk, model, prompt],
                                   env=clean, cwd=ROOT, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-3000:] + "\n--- server ---\n" + proxied.server.output()[-3000:]
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- decrypted provider hosts

async def test_generated_ca_on_first_start(proxied: Proxied) -> None:
    key = proxied.ca_path.with_name("ca-key.pem")
    assert proxied.ca_path.exists() and key.exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert str(proxied.ca_path) in proxied.server.output(), "the server prints where the CA is"
    cert = x509.load_pem_x509_certificate(proxied.ca_path.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


async def test_openai_sdk_through_proxy(proxied: Proxied) -> None:
    owner = proxied.owner()
    before = await ids(owner)
    seen = len(proxied.fake.requests)
    result = await run_sdk(proxied, "openai", "gpt-4.1-scenario-simple", "via proxy openai")
    assert result["blocking"] and result["chunks"] > 1 and result["models"]
    sent = proxied.fake.requests[seen:]
    assert [r.path for r in sent] == ["/v1/chat/completions", "/v1/chat/completions", "/v1/models"]
    for request in sent:
        assert request.headers["Authorization"] == "Bearer sk-openai-central"
        assert all(proxied.token not in v and "developers-own" not in v for v in request.headers.values())
    assert sent[1].include_usage
    prompts = set()
    for _ in range(2):
        record = await latest(owner, "model:gpt-4.1-scenario-simple", after=before)
        before.add(record["id"])
        assert record["initiator"]["username"] == "pat"
        assert record["provider"] == "openai"
        assert sum(u["output_tokens"] for u in record["token_usages"]) > 0
        assert record["metadata"].get("door") == "proxy", record["metadata"]
        prompts.add(record["user_prompts"][0]["prompt"])
    assert prompts == {"via proxy openai blocking", "via proxy openai streaming"}


async def test_anthropic_sdk_through_proxy(proxied: Proxied) -> None:
    owner = proxied.owner()
    before = await ids(owner)
    seen = len(proxied.fake.requests)
    result = await run_sdk(proxied, "anthropic", "claude-sonnet-4-5-scenario-simple", "via proxy anthropic")
    assert result == {"blocking": "end_turn", "streamed": "end_turn"}
    sent = proxied.fake.requests[seen:]
    assert [r.path for r in sent] == ["/v1/messages", "/v1/messages"]
    for request in sent:
        assert request.headers["x-api-key"] == "sk-ant-central"
        assert all(proxied.token not in v and "developers-own" not in v for v in request.headers.values())
    prompts = set()
    for _ in range(2):
        record = await latest(owner, "model:claude-sonnet-4-5-scenario-simple", after=before)
        before.add(record["id"])
        assert record["initiator"]["username"] == "pat" and record["provider"] == "anthropic"
        assert record["metadata"].get("door") == "proxy", record["metadata"]
        prompts.add(record["user_prompts"][0]["prompt"])
    assert prompts == {"via proxy anthropic blocking", "via proxy anthropic streaming"}


async def test_unknown_path_on_provider_host_is_not_supported(proxied: Proxied) -> None:
    status, _, reader, writer = await connect(proxied.address, "api.openai.com:443", basic(proxied.token))
    assert status == 200
    cert = await tls_inside(reader, writer, trusting(proxied.ca_path), "api.openai.com")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "api.openai.com"
    writer.write(b"GET /v2/whatever HTTP/1.1\r\nHost: api.openai.com\r\nConnection: close\r\n\r\n")
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 404"), reply[:200]
    assert b"route not supported" in reply


async def test_client_that_does_not_trust_the_ca_fails_the_handshake(proxied: Proxied) -> None:
    status, _, reader, writer = await connect(proxied.address, "api.anthropic.com:443", basic(proxied.token))
    assert status == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        await tls_inside(reader, writer, ssl.create_default_context(), "api.anthropic.com")
    writer.close()


# ---------------------------------------------------------------- authentication

@pytest.mark.parametrize("headers", [
    {},
    {"Proxy-Authorization": "Basic !!!not-base64"},
    {"Proxy-Authorization": "Digest abc"},
    basic("abc-def"),
    basic(""),
], ids=["none", "garbage", "other-scheme", "unknown-token", "empty-password"])
async def test_connect_without_valid_credentials_gets_407(proxied: Proxied, headers: dict[str, str]) -> None:
    for target in ("api.openai.com:443", "example.com:443"):
        status, answer, _, writer = await connect(proxied.address, target, headers)
        writer.close()
        assert status == 407, answer
        assert b'Proxy-Authenticate: Basic realm="AI Bridge Proxy"' in answer


async def test_revoked_token_stops_working(proxied: Proxied) -> None:
    token = proxied.server.create_user("revokee")
    status, _, reader, writer = await connect(proxied.address, "api.openai.com:443", basic(token))
    assert status == 200
    await tls_inside(reader, writer, trusting(proxied.ca_path), "api.openai.com")
    token_id = token.split("-", 1)[0]
    status_code, _ = await proxied.owner().request("DELETE", f"/api/v2/users/revokee/keys/{token_id}")
    assert status_code in (200, 204)

    async def refused() -> bool:
        status, _, _, w = await connect(proxied.address, "api.openai.com:443", basic(token))
        w.close()
        return status == 407
    assert await wait_for(refused, 15, 0.5), "a revoked token must stop opening CONNECTs within the cache TTL"
    # The connection opened before the revocation stops too: each request is checked again.
    writer.write(b"GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\nConnection: close\r\n\r\n")
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 403"), reply[:200]


async def test_suspended_user_stops_working(proxied: Proxied) -> None:
    token = proxied.server.create_user("leaver")
    engine = create_engine(load_settings(env=proxied.server.env, storage_only=True).database_url)
    try:      # off-boarding, as `aibridge users suspend` does it: on the database
        await user_store.set_suspended(engine, (await user_store.get_user(engine, "leaver")).id, True)
    finally:
        await engine.dispose()

    async def refused() -> bool:
        status, _, _, w = await connect(proxied.address, "api.anthropic.com:443", basic(token))
        w.close()
        return status == 407
    assert await wait_for(refused, 15, 0.5)


# ---------------------------------------------------------------- tunnels

async def test_tunnel_to_private_address_refused_without_allowed_cidrs(proxied: Proxied,
                                                                       tmp_path: Path) -> None:
    target = await LoopbackTLS(tmp_path).start()
    try:
        for host in (target.address, "localhost"):
            status, answer, _, writer = await connect(proxied.address, f"{host}:443", basic(proxied.token))
            writer.close()
            assert status == 403, answer
            assert b"private" in answer
    finally:
        await target.stop()


@pytest.mark.parametrize("port", [22, 25, 8080])
async def test_tunnel_ports_other_than_80_and_443_refused(proxied: Proxied, port: int) -> None:
    status, answer, _, writer = await connect(proxied.address, f"example.com:{port}", basic(proxied.token))
    writer.close()
    assert status == 403 and f"port {port}".encode() in answer


async def test_plain_http_proxy_request_refused(proxied: Proxied) -> None:
    reader, writer = await asyncio.open_connection(*proxied.address)
    writer.write(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 405")


# ---------------------------------------------------------------- CA certificate, metrics

async def test_ca_endpoint_and_command(proxied: Proxied) -> None:
    pem = proxied.ca_path.read_bytes()
    member = Client(proxied.server.url, proxied.token)
    status, body = await member.get("/api/v2/aibridge/proxy/ca-cert.pem")
    assert status == 200 and body.encode() == pem
    assert b"PRIVATE KEY" not in body.encode()
    for path in ("/api/v2/aibridge/proxy/ca-cert.pem", "/api/v2/ai-gateway/proxy/ca-cert.pem"):
        status, body = await Client(proxied.server.url, "").get(path)     # public: fetched before any set-up
        assert status == 200 and body.encode() == pem, path
    done = proxied.server.cli("proxy", "ca-cert")
    assert done.returncode == 0, done.stderr
    assert done.stdout.encode() == pem


async def test_proxy_metrics(proxied: Proxied) -> None:
    await run_sdk(proxied, "anthropic", "claude-sonnet-4-5-scenario-simple", "metrics")
    status, text = await proxied.owner().get("/metrics")
    assert status == 200
    lines = text.splitlines()
    assert any(line.startswith('coder_aibridgeproxyd_connect_sessions_total{type="mitm"}') for line in lines)
    assert any(line.startswith('coder_aibridgeproxyd_mitm_requests_total{provider="anthropic"}') for line in lines)
    assert 'coder_aibridgeproxyd_inflight_mitm_requests{provider="anthropic"} 0.0' in lines
    assert any(line.startswith('coder_aibridgeproxyd_mitm_responses_total{code="200",provider="anthropic"}')
               for line in lines)


# ---------------------------------------------------------------- TLS listener, allowed CIDRs, own CA

@dataclass
class Secured:
    server: ServerProcess
    proxy_port: int
    token: str
    ca_path: Path
    listener_ca: Path
    target: LoopbackTLS


@pytest.fixture(scope="module")
async def secured(module_database: Database) -> AsyncIterator[Secured]:
    fake = FakeUpstream()
    await fake.start()
    files = Path(tempfile.mkdtemp(prefix="aibridge-proxy-test-"))
    ca_cert, ca_key, _ = self_signed("Test Corp Proxy CA", files, ca=True)
    listener_cert, listener_key, _ = self_signed("127.0.0.1", files)
    target = await LoopbackTLS(files).start()
    port = free_port()
    env = proxy_env(fake, port, CODER_AIBRIDGE_PROXY_CERT_FILE=str(ca_cert), CODER_AIBRIDGE_PROXY_KEY_FILE=str(ca_key),
                    CODER_AIBRIDGE_PROXY_TLS_CERT_FILE=str(listener_cert),
                    CODER_AIBRIDGE_PROXY_TLS_KEY_FILE=str(listener_key),
                    CODER_AIBRIDGE_PROXY_ALLOWED_PRIVATE_CIDRS=f"{target.address}/32",
                    CODER_AIBRIDGE_DATA_DIR=str(files / "data"))
    server = await ServerProcess(module_database, env=env).start()
    try:
        await wait_listening(port)
        yield Secured(server, port, server.create_user("sec"), ca_cert, listener_cert, target)
    finally:
        server.stop()
        await target.stop()
        await fake.stop()


async def test_tls_listener_and_allowed_private_tunnel(secured: Secured) -> None:
    listener_tls = trusting(secured.listener_ca)
    listener_tls.minimum_version = ssl.TLSVersion.TLSv1_2
    status, _, reader, writer = await connect(("127.0.0.1", secured.proxy_port), f"{secured.target.address}:443",
                                              basic(secured.token), proxy_tls=listener_tls)
    assert status == 200
    cert = await tls_inside(reader, writer, trusting(secured.target.cert_path), secured.target.address)
    assert cert == secured.target.cert, "a tunnel must show the far server's own certificate"
    writer.write(b"hello through the tunnel\n")
    assert await asyncio.wait_for(reader.read(), 10) == b"echo:hello through the tunnel\n"
    writer.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_listener_refuses_old_tls(secured: Secured) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(secured.listener_ca)
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ValueError, ssl.SSLError):
        old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", secured.proxy_port, ssl=old,
                                                       server_hostname="127.0.0.1"), 10)


async def test_configured_ca_signs_and_decrypts_through_tls_listener(secured: Secured) -> None:
    status, _, reader, writer = await connect(("127.0.0.1", secured.proxy_port), "api.anthropic.com:443",
                                              basic(secured.token), proxy_tls=trusting(secured.listener_ca))
    assert status == 200
    cert = await tls_inside(reader, writer, trusting(secured.ca_path), "api.anthropic.com")
    assert cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test Corp Proxy CA"
    body = orjson.dumps({"model": "claude-haiku-4-5", "max_tokens": 16,
                         "messages": [{"role": "user", "content": "tls in tls"}]})
    writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Type: application/json\r\n"
                 b"x-api-key: sk-whatever\r\nanthropic-version: 2023-06-01\r\nConnection: close\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    # (On PostgreSQL this server shares its database with the first fixture's: no first-owner token.)
    owner = Client(secured.server.url, secured.server.create_user("secowner", role="owner"))
    record = await latest(owner, "initiator:sec")
    assert record["user_prompts"][0]["prompt"] == "tls in tls"


def test_generated_ca_not_used_when_one_is_configured(secured: Secured) -> None:
    assert not (Path(secured.server.env["CODER_AIBRIDGE_DATA_DIR"]) / "proxy").exists()
    done = secured.server.cli("proxy", "ca-cert")
    assert done.returncode == 0 and done.stdout.encode() == secured.ca_path.read_bytes()



# ---------------------------------------------------------------- through a corporate proxy

class CorporateProxy:
    """A stand-in for the company's HTTP proxy: notes each CONNECT, then tunnels to ``routes[target]``."""

    def __init__(self, routes: dict[str, tuple[str, int]]) -> None:
        self.routes = routes
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> CorporateProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        target = head.split(b" ")[1].decode()
        if b"Proxy-Authorization: Basic " + base64.b64encode(b"corp:s3cret") not in head or target not in self.routes:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        far_reader, far_writer = await asyncio.open_connection(*self.routes[target])
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()
        await asyncio.gather(copy(reader, far_writer), copy(far_reader, writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_tunnel_through_upstream_proxy(module_database: Database, tmp_path: Path) -> None:
    fake = FakeUpstream()
    await fake.start()
    target = await LoopbackTLS(tmp_path).start()
    corporate = await CorporateProxy({"intranet.example:443": (target.address, 443)}).start()
    port = free_port()
    env = proxy_env(fake, port, CODER_AIBRIDGE_PROXY_UPSTREAM=f"http://corp:s3cret@127.0.0.1:{corporate.port}",
                    CODER_AIBRIDGE_DATA_DIR=str(tmp_path / "data"))
    server = await ServerProcess(module_database, env=env).start()
    try:
        await wait_listening(port)
        token = server.create_user("tunneller")
        status, _, reader, writer = await connect(("127.0.0.1", port), "intranet.example:443", basic(token))
        assert status == 200
        cert = await tls_inside(reader, writer, trusting(target.cert_path), target.address)
        assert cert == target.cert
        writer.write(b"via corp\n")
        assert await asyncio.wait_for(reader.read(), 10) == b"echo:via corp\n"
        writer.close()
        assert corporate.heads[0].startswith(b"CONNECT intranet.example:443 HTTP/1.1\r\n")
        assert token.encode() not in corporate.heads[0]
        # The corporate proxy refusing is a 502 for the client; literal private addresses and other
        # ports are refused before it is asked.
        for where, expected in (("unknown.example:443", 502), (f"{target.address}:443", 403),
                                ("intranet.example:22", 403)):
            status, answer, _, writer = await connect(("127.0.0.1", port), where, basic(token))
            writer.close()
            assert status == expected, answer
        assert len(corporate.heads) == 2
    finally:
        server.stop()
        await corporate.stop()
        await target.stop()
        await fake.stop()


# ---------------------------------------------------------------- what `aibridge env --proxy` prints works

async def test_env_proxy_snippet_drives_an_sdk(proxied: Proxied, tmp_path: Path) -> None:
    printed = proxied.server.cli("env", "anthropic", "--proxy", "--url", proxied.server.url, "--token", proxied.token,
                                 "--proxy-url", f"http://127.0.0.1:{proxied.proxy_port}")
    assert printed.returncode == 0, printed.stderr
    # Evaluated as printed (it fetches the CA with curl and builds the bundle), then the resulting environment.
    shell = await asyncio.to_thread(
        subprocess.run, ["bash", "-c", 'set -e; eval "$SNIPPET"; env -0'],
        env={"SNIPPET": printed.stdout, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=30, check=False)
    assert shell.returncode == 0, shell.stderr
    env = dict(item.split("=", 1) for item in shell.stdout.split("\0") if "=" in item)
    assert env["HTTPS_PROXY"] == f"http://coder:{proxied.token}@127.0.0.1:{proxied.proxy_port}"
    assert (tmp_path / ".config/aibridge/proxy-ca.pem").read_bytes() == proxied.ca_path.read_bytes()
    chosen = {k: env[k] for k in ("HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
                                  "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE")}
    owner = proxied.owner()
    before = await ids(owner)
    assert await run_sdk(proxied, "anthropic", "claude-haiku-4-5-scenario-simple", "from env", **chosen) == {
        "blocking": "end_turn", "streamed": "end_turn"}
    record = await latest(owner, "model:claude-haiku-4-5-scenario-simple", after=before)
    assert record["initiator"]["username"] == "pat"


# ---------------------------------------------------------------- the real Claude Code CLI

@pytest.mark.timeout(INSTALL_TIMEOUT + 300)
async def test_claude_code_through_proxy(proxied: Proxied, tmp_path: Path) -> None:
    """Claude Code given only HTTPS_PROXY and NODE_EXTRA_CA_CERTS (no ANTHROPIC_BASE_URL) and its own key."""
    clients = npm_clients()
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = client_env(home, clients.node, {
        "HTTPS_PROXY": proxied.proxy_url, "NODE_EXTRA_CA_CERTS": str(proxied.ca_path),
        "ANTHROPIC_API_KEY": "sk-ant-developers-own", "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"})
    owner = proxied.owner()
    before = await ids(owner)
    first = len(proxied.fake.requests)
    proc = await asyncio.create_subprocess_exec(
        str(clients.claude), "-p", "How long should I steep green tea?", env=env, cwd=work,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    sent = proxied.fake.requests[first:]
    assert proc.returncode == 0, (out, err[-3000:], proxied.server.output()[-3000:])
    assert out.decode().strip()
    assert sent and all(r.path == "/v1/messages" and r.headers["x-api-key"] == "sk-ant-central" for r in sent)
    assert all("developers-own" not in v and proxied.token not in v for r in sent for v in r.headers.values())
    record = await latest(owner, "initiator:pat", after=before)
    assert record["client"] == "Claude Code" and record["metadata"]["door"] == "proxy"
    assert [p["prompt"] for p in record["user_prompts"]] == ["How long should I steep green tea?"]


# ---------------------------------------------------------------- shutdown

async def test_sigterm_drains_a_decrypted_stream(database: Database) -> None:
    async with FakeUpstream() as fake:
        port = free_port()
        server = await ServerProcess(database, env=proxy_env(fake, port, CODER_AIBRIDGE_SHUTDOWN_GRACE="30s")).start()
        await wait_listening(port)
        token = server.create_user("drain")
        expected = b"".join(chunk for chunk, _ in get_scenario("messages", "slow").replies["streaming"].chunks)
        context = trusting(database.data_dir / "proxy" / "ca.pem")
        async with aiohttp.ClientSession() as session:
            resp = await session.post("https://api.anthropic.com/v1/messages", ssl=context,
                                      proxy=f"http://coder:{token}@127.0.0.1:{port}",
                                      headers={"x-api-key": "sk-ant-own", "anthropic-version": "2023-06-01"},
                                      json={"model": "claude-scenario-slow", "max_tokens": 100, "stream": True,
                                            "messages": [{"role": "user", "content": "drain me"}]})
            assert resp.status == 200
            first = await resp.content.readuntil(b"content_block_delta")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)             # mid-stream
            await asyncio.sleep(0.5)
            with pytest.raises(OSError):                         # no new CONNECTs once stopping
                await connect(("127.0.0.1", port), "api.anthropic.com:443", basic(token))
            rest = await asyncio.wait_for(resp.read(), 30)
        assert first + rest == expected                          # the stream ran to its end
        assert await asyncio.to_thread(server.proc.wait, 30) == 0


# ---------------------------------------------------------------- the real Codex CLI

@pytest.mark.timeout(INSTALL_TIMEOUT + 300)
async def test_codex_through_proxy(proxied: Proxied, tmp_path: Path) -> None:
    """Codex with its default OpenAI provider, given only HTTPS_PROXY and SSL_CERT_FILE and its own key."""
    clients = npm_clients()
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".codex").mkdir(parents=True)
    work.mkdir()
    env = client_env(home, clients.node, {
        "HTTPS_PROXY": proxied.proxy_url, "SSL_CERT_FILE": str(proxied.ca_path),
        "CODEX_HOME": str(home / ".codex"), "OPENAI_API_KEY": "sk-developers-own-openai-key"})
    owner = proxied.owner()
    before = await ids(owner)
    first = len(proxied.fake.requests)
    proc = await asyncio.create_subprocess_exec(
        clients.node, str(clients.codex), "exec", "--skip-git-repo-check", "How long should I steep green tea?",
        env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    sent = proxied.fake.requests[first:]
    assert proc.returncode == 0, (out, err[-3000:], proxied.server.output()[-3000:])
    assert out.decode().strip()
    assert sent and all(r.path == "/v1/responses" and r.headers["Authorization"] == "Bearer sk-openai-central"
                        for r in sent)
    record = await latest(owner, "initiator:pat", after=before)
    assert record["client"] == "Codex" and record["metadata"]["door"] == "proxy"


# ---------------------------------------------------------------- spans and structured logs

async def test_spans_and_logs_of_decrypted_requests(database: Database) -> None:
    receiver = OTLPReceiver()
    await receiver.start()
    fake = FakeUpstream()
    await fake.start()
    port = free_port()
    env = proxy_env(fake, port, CODER_TRACE_ENABLE="true", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
                    OTEL_BSP_SCHEDULE_DELAY="50", CODER_AIBRIDGE_STRUCTURED_LOGGING="true", CODER_LOGGING_JSON="true")
    server = await ServerProcess(database, env=env).start()
    try:
        await wait_listening(port)
        token = server.create_user("traced")
        proxied = Proxied(server, fake, port, token, database.data_dir / "proxy" / "ca.pem")
        await run_sdk(proxied, "anthropic", "claude-sonnet-4-5-scenario-simple", "traced")

        async def exported() -> list[Any]:
            return receiver.named("Intercept")
        roots = await wait_for(exported, 15)
        assert roots, [s.name for s in receiver.spans]
        attrs = span_attributes(roots[0])
        assert attrs["door"] == "proxy" and attrs["provider"] == "anthropic"
        assert attrs["request_path"] == "/api/v2/aibridge/anthropic/v1/messages"
    finally:
        server.stop()
        await fake.stop()
        await receiver.stop()
    lines = [orjson.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["msg"] == "proxy request"]
    assert {(r["provider"], r["path"], r["status"], r["user"]) for r in requests} == {
        ("anthropic", "/v1/messages", 200, "traced")}
    connects = [line for line in lines if line["msg"] == "proxy connect"]
    assert connects and all(c["type"] == "mitm" and c["host"] == "api.anthropic.com" for c in connects)
    assert any(line["msg"] == "interception log" and line.get("record_type") == "interception_start"
               for line in lines)
    assert token not in server.output() and token.split("-", 1)[1] not in server.output()
