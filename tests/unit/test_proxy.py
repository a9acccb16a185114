"""AI Bridge Proxy parts: options, host mapping, address checks, CONNECT parsing, certificates."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from aibridge.bridge.providers import PROVIDER_KINDS
from aibridge.bridge.providers.copilot import CopilotProviderConfig
from aibridge.bridge.providers.http import HTTPProviderConfig
from aibridge.config import ConfigError, ProviderConfig, load_settings
from aibridge.proxy.addresses import Refused, networks, resolve
from aibridge.proxy.ca import CertificateAuthority
from aibridge.proxy.hosts import DecryptedHosts
from aibridge.proxy.listener import parse_head, proxy_token
from aibridge.proxy.tunnel import UpstreamProxy


def http(ptype: str, name: str, base_url: str) -> HTTPProviderConfig:
    return HTTPProviderConfig(ptype, ptype, name, base_url, "k")


ENABLED = {"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_OPENAI_KEY": "k", "CODER_AIBRIDGE_PROXY_ENABLED": "true"}


# ---------------------------------------------------------------- options

def test_proxy_defaults() -> None:
    s = load_settings({}, env=ENABLED, provider_kinds=PROVIDER_KINDS)
    assert s.aibridge_proxy_enabled and s.aibridge_proxy_listen_addr == "127.0.0.1:8888"   # loopback (3.3)
    assert s.aibridge_proxy_allowed_private_cidrs == ()
    flagged = load_settings({"aibridge_proxy_listen_addr": "127.0.0.1:9999",
                             "aibridge_proxy_allowed_private_cidrs": "10.0.0.0/8, 192.168.1.7"}, env=ENABLED,
                            provider_kinds=PROVIDER_KINDS)
    assert flagged.aibridge_proxy_listen_addr == "127.0.0.1:9999"
    assert flagged.aibridge_proxy_allowed_private_cidrs == ("10.0.0.0/8", "192.168.1.7/32")


@pytest.mark.parametrize(("env", "fragment"), [
    ({"CODER_AIBRIDGE_PROXY_ALLOWED_PRIVATE_CIDRS": "10.0.0.0/8,nope"},
     "CODER_AIBRIDGE_PROXY_ALLOWED_PRIVATE_CIDRS: invalid CIDR 'nope'"),
    ({"CODER_AIBRIDGE_PROXY_LISTEN_ADDR": "8888"}, "CODER_AIBRIDGE_PROXY_LISTEN_ADDR: invalid address"),
    ({"CODER_AIBRIDGE_PROXY_UPSTREAM": "proxy.corp:3128"}, "CODER_AIBRIDGE_PROXY_UPSTREAM: invalid URL"),
    ({"CODER_AIBRIDGE_PROXY_CERT_FILE": "/x.pem"}, "--aibridge-proxy-cert-file: set both it and"),
    ({"CODER_AIBRIDGE_PROXY_TLS_KEY_FILE": "/x.pem"}, "--aibridge-proxy-tls-cert-file: set both"),
    ({"CODER_AIBRIDGE_ENABLED": "false"}, "--aibridge-proxy-enabled: the proxy hands decrypted requests"),
])
def test_bad_proxy_options_name_the_option(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({}, env={**ENABLED, **env}, provider_kinds=PROVIDER_KINDS)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("extra", "fragment"), [
    ({"CODER_AIBRIDGE_PROXY_CERT_FILE": "/nonexistent/ca.pem", "CODER_AIBRIDGE_PROXY_KEY_FILE": "/nonexistent/k"},
     "error: --aibridge-proxy-cert-file: cannot read /nonexistent/ca.pem"),
    ({"CODER_AIBRIDGE_PROXY_TLS_CERT_FILE": "/nonexistent/t.pem", "CODER_AIBRIDGE_PROXY_TLS_KEY_FILE": "/nx/k"},
     "error: --aibridge-proxy-tls-cert-file: cannot load /nonexistent/t.pem"),
])
def test_unreadable_proxy_files_stop_startup_with_one_line(tmp_path: Path, extra: dict[str, str],
                                                           fragment: str) -> None:
    from tests.harness import base_env
    env = base_env({**ENABLED, **extra, "CODER_AIBRIDGE_DATA_DIR": str(tmp_path),
                    "CODER_HTTP_ADDRESS": "127.0.0.1:0", "CODER_AIBRIDGE_PROXY_LISTEN_ADDR": "127.0.0.1:0"})
    done = subprocess.run([sys.executable, "-m", "aibridge", "server"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(fragment), done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- decrypted hosts

def test_decrypted_hosts_from_providers() -> None:
    hosts = DecryptedHosts([
        http("openai", "openai", "https://api.openai.com/v1/"),
        http("anthropic", "anthropic", "https://127.0.0.1:9000/"),
        http("openai", "litellm", "https://gw.corp.example/openai/v1"),
    ])
    assert hosts.hosts == ["127.0.0.1:9000", "api.anthropic.com:443", "api.openai.com:443", "gw.corp.example:443"]
    assert hosts.route("api.openai.com", 443, "/v1/chat/completions") == ("openai", "v1/chat/completions")
    assert hosts.route("API.OpenAI.com", 443, "/v1/models/gpt-4.1") == ("openai", "v1/models/gpt-4.1")
    assert hosts.route("api.openai.com", 443, "/chat/completions") == ("openai", None)
    assert hosts.route("api.anthropic.com", 443, "/v1/messages") == ("anthropic", "v1/messages")
    # A provider whose base URL has a path: the base path comes off, OpenAI's v1/ goes back on.
    assert hosts.route("gw.corp.example", 443, "/openai/v1/responses") == ("litellm", "v1/responses")
    assert hosts.route("gw.corp.example", 443, "/v1/responses") == ("litellm", None)
    assert not hosts.decrypts("api.openai.com", 80) and not hosts.decrypts("example.com", 443)


def test_only_enabled_provider_types_are_decrypted() -> None:
    hosts = DecryptedHosts([http("anthropic", "claude", "https://api.anthropic.com/")])
    assert hosts.hosts == ["api.anthropic.com:443"]
    assert hosts.route("api.anthropic.com", 443, "/v1/messages") == ("claude", "v1/messages")


def test_plain_http_base_urls_and_bedrock() -> None:
    bedrock = ProviderConfig("bedrock", "anthropic", "anthropic", "https://bedrock-runtime.us-east-1.amazonaws.com")
    hosts = DecryptedHosts([http("openai", "openai", "http://127.0.0.1:9/v1/"), bedrock])
    assert hosts.hosts == ["api.anthropic.com:443", "api.openai.com:443"]
    assert hosts.route("api.anthropic.com", 443, "/v1/messages") == ("anthropic", "v1/messages")


def test_type_host_maps_to_the_provider_named_after_the_type() -> None:
    hosts = DecryptedHosts([http("openai", "azure", "https://azure.example/v1/"),
                            http("openai", "openai", "http://127.0.0.1:1/v1/")])
    assert hosts.route("api.openai.com", 443, "/v1/responses") == ("openai", "v1/responses")


def test_shared_host_picks_the_provider_that_supports_the_route() -> None:
    hosts = DecryptedHosts([http("openai", "openai", "https://127.0.0.1:9/v1/"),
                            http("anthropic", "anthropic", "https://127.0.0.1:9/")])
    supports = {("openai", "v1/chat/completions"), ("anthropic", "v1/messages")}
    assert hosts.route("127.0.0.1", 9, "/v1/messages", lambda p, t: (p, t) in supports) == (
        "anthropic", "v1/messages")
    assert hosts.route("127.0.0.1", 9, "/v1/chat/completions", lambda p, t: (p, t) in supports) == (
        "openai", "v1/chat/completions")


# ---------------------------------------------------------------- addresses

@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                  "100.64.0.1", "0.0.0.0", "240.0.0.1", "224.0.0.1", "::1", "fe80::1",
                                  "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"])
async def test_special_addresses_refused(host: str) -> None:
    with pytest.raises(Refused) as err:
        await resolve(host, 443, ())
    assert err.value.status == 403


async def test_allowed_cidrs_and_public_addresses() -> None:
    assert await resolve("10.1.2.3", 443, networks(["10.0.0.0/8"])) == "10.1.2.3"
    assert await resolve("8.8.8.8", 80, ()) == "8.8.8.8"
    assert await resolve("2606:4700::1111", 443, ()) == "2606:4700::1111"
    with pytest.raises(Refused):
        await resolve("10.1.2.3", 443, networks(["10.2.0.0/16"]))


async def test_names_are_resolved_once_and_checked() -> None:
    with pytest.raises(Refused) as err:
        await resolve("localhost", 443, ())
    assert "private" in err.value.message
    assert ipaddress.ip_address(await resolve("localhost", 443, networks(["127.0.0.0/8", "::1/128"]))).is_loopback


@pytest.mark.parametrize("port", [22, 25, 8443, 3306])
async def test_only_ports_80_and_443(port: int) -> None:
    with pytest.raises(Refused) as err:
        await resolve("8.8.8.8", port, ())
    assert err.value.status == 403 and str(port) in err.value.message


# ---------------------------------------------------------------- CONNECT head

def test_parse_connect_head() -> None:
    head = b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\nProxy-Authorization: Basic eA==\r\n\r\n"
    connect = parse_head(head)
    assert (connect.host, connect.port) == ("api.openai.com", 443)
    assert connect.headers["proxy-authorization"] == "Basic eA=="
    assert parse_head(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n").host == "::1"
    for bad, status in ((b"GET http://x/ HTTP/1.1\r\n\r\n", 405), (b"CONNECT nohost HTTP/1.1\r\n\r\n", 400),
                        (b"CONNECT x:99999 HTTP/1.1\r\n\r\n", 400)):
        with pytest.raises(Refused) as err:
            parse_head(bad)
        assert err.value.status == status


def test_proxy_token_is_the_basic_password() -> None:
    def basic(text: str) -> dict[str, str]:
        return {"proxy-authorization": "Basic " + base64.b64encode(text.encode()).decode()}
    assert proxy_token(basic("coder:abc-def")) == "abc-def"
    assert proxy_token(basic("anything:abc:def")) == "abc:def"
    assert proxy_token(basic(":tok")) == "tok"
    assert proxy_token(basic("onlyuser")) is None
    assert proxy_token({"proxy-authorization": "Bearer tok"}) == "tok"
    assert proxy_token({"proxy-authorization": "Basic %%%"}) is None
    assert proxy_token({}) is None


def test_upstream_proxy_url() -> None:
    up = UpstreamProxy.parse("http://me:p%40ss@proxy.corp:3128", "")
    assert (up.host, up.port, up.tls) == ("proxy.corp", 3128, None)
    assert up.authorization == "Basic " + base64.b64encode(b"me:p@ss").decode()
    assert UpstreamProxy.parse("https://proxy.corp", "").tls is not None
    assert UpstreamProxy.parse("https://proxy.corp", "").port == 443
    with pytest.raises(ConfigError, match="--aibridge-proxy-upstream-ca: cannot load"):
        UpstreamProxy.parse("https://proxy.corp", "/nonexistent.pem")


# ---------------------------------------------------------------- certificates

def test_generated_ca_files_and_permissions(tmp_path: Path) -> None:
    ca, created = CertificateAuthority.load_or_generate(tmp_path / "proxy")
    assert created
    key = tmp_path / "proxy" / "ca-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "proxy").stat().st_mode) == 0o700
    assert b"PRIVATE" not in ca.cert_pem
    again, created = CertificateAuthority.load_or_generate(tmp_path / "proxy")
    assert not created and again.cert == ca.cert


def test_mismatched_key_is_refused(tmp_path: Path) -> None:
    one, _ = CertificateAuthority.load_or_generate(tmp_path / "one")
    CertificateAuthority.load_or_generate(tmp_path / "two")
    with pytest.raises(ConfigError, match="is not the key of"):
        CertificateAuthority.load(str(tmp_path / "one" / "ca.pem"), str(tmp_path / "two" / "ca-key.pem"))
    (tmp_path / "bad.pem").write_text("nope")
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        CertificateAuthority.load(str(tmp_path / "bad.pem"), str(tmp_path / "one" / "ca-key.pem"))
    assert one.cert_path == tmp_path / "one" / "ca.pem"


@pytest.mark.parametrize("host", ["api.openai.com", "127.0.0.1"])
async def test_minted_certificate_verifies_strictly(tmp_path: Path, host: str) -> None:
    ca, _ = CertificateAuthority.load_or_generate(tmp_path)
    assert ca.server_context(host) is ca.server_context(host), "one context per host, cached"
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=ca.server_context(host))
    port = server.sockets[0].getsockname()[1]
    client = ssl.create_default_context(cafile=str(ca.cert_path))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=host)
        peer = x509.load_der_x509_certificate(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
        assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        writer.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="evil.example")
    finally:
        server.close()
    assert peer.issuer == ca.cert.subject


def test_domain_allowlist_is_accepted_and_changes_nothing() -> None:
    s = load_settings({}, env={**ENABLED, "CODER_AIBRIDGE_PROXY_DOMAIN_ALLOWLIST": "api.openai.com,example.com"},
                      provider_kinds=PROVIDER_KINDS)
    assert s.aibridge_proxy_domain_allowlist == "api.openai.com,example.com"
    assert DecryptedHosts(s.providers).hosts == ["api.openai.com:443"]


def test_ca_cert_command_before_any_ca_exists(tmp_path: Path) -> None:
    from tests.harness import run_cli
    done = run_cli(["proxy", "ca-cert"], {"CODER_AIBRIDGE_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: no proxy CA in ") and "--aibridge-proxy-enabled" in done.stderr


def test_the_byok_only_chatgpt_provider_never_takes_the_public_openai_host() -> None:
    chatgpt = HTTPProviderConfig("openai", "openai", "chatgpt", "https://chatgpt.com/backend-api/codex", "",
                                 byok_only=True)
    hosts = DecryptedHosts([chatgpt])
    assert hosts.hosts == ["chatgpt.com:443"]
    assert hosts.route("chatgpt.com", 443, "/backend-api/codex/responses") == ("chatgpt", "v1/responses")
    both = DecryptedHosts([chatgpt, http("openai", "gpt", "https://gw.example/v1/")])
    assert both.route("api.openai.com", 443, "/v1/responses") == ("gpt", "v1/responses")


PLAN_HOSTS = ["api.business.githubcopilot.com:443", "api.enterprise.githubcopilot.com:443",
              "api.individual.githubcopilot.com:443"]


def copilot(name: str, base_url: str, plan: str = "individual") -> CopilotProviderConfig:
    return CopilotProviderConfig("copilot", "copilot", name, base_url, "", byok_only=True, plan=plan)


def test_copilots_plan_hosts_are_decrypted_whatever_its_base_url() -> None:
    hosts = DecryptedHosts([copilot("copilot", "http://127.0.0.1:9/")])       # plain http: never a host of its own
    assert hosts.hosts == PLAN_HOSTS
    for host in PLAN_HOSTS:
        assert hosts.route(host.removesuffix(":443"), 443, "/chat/completions") == ("copilot", "chat/completions")
    assert hosts.route("api.individual.githubcopilot.com", 443, "/v1/messages") == ("copilot", "v1/messages")
    assert hosts.route("api.individual.githubcopilot.com", 443, "/models") == ("copilot", "models")
    assert not hosts.decrypts("api.githubcopilot.com", 443) and not hosts.decrypts("api.openai.com", 443)


def test_one_copilot_provider_per_plan() -> None:
    hosts = DecryptedHosts([copilot("cop-me", "http://127.0.0.1:9/"),
                            copilot("cop-work", "http://127.0.0.1:10/", plan="business")])
    assert hosts.route("api.individual.githubcopilot.com", 443, "/responses")[0] == "cop-me"
    assert hosts.route("api.business.githubcopilot.com", 443, "/responses")[0] == "cop-work"
    assert hosts.route("api.enterprise.githubcopilot.com", 443, "/responses")[0] == "cop-me"     # the first
    # A provider whose base URL is a plan host keeps it.
    ghe = DecryptedHosts([copilot("a", "http://127.0.0.1:9/"), copilot("ent", "https://api.enterprise.githubcopilot.com",
                                                                        plan="business")])
    assert ghe.route("api.enterprise.githubcopilot.com", 443, "/responses")[0] == "ent"


def test_chatgpts_backend_is_decrypted_whatever_its_base_url() -> None:
    chatgpt = HTTPProviderConfig("openai", "openai", "chatgpt", "http://127.0.0.1:9/backend-api/codex", "",
                                 byok_only=True)
    hosts = DecryptedHosts([chatgpt])
    assert hosts.hosts == ["chatgpt.com:443"]
    assert hosts.route("chatgpt.com", 443, "/backend-api/codex/responses") == ("chatgpt", "v1/responses")
    assert DecryptedHosts([http("openai", "chatgpt", "http://127.0.0.1:9/v1/")]).hosts == ["api.openai.com:443"]
