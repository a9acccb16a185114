from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from aibridge.bridge.providers import PROVIDER_KINDS
from aibridge.bridge.providers.bedrock.provider import BedrockProviderConfig
from aibridge.bridge.providers.http import HTTPProviderConfig
from aibridge.config import OPTIONS, ConfigError, Option, Settings, format_duration, parse_duration
from aibridge.config import load_settings as load_config


def load_settings(flags: dict[str, Any], env: dict[str, str], config_path: str | None = None) -> Settings:
    return load_config(flags, env, config_path, provider_kinds=PROVIDER_KINDS)


def test_durations_accept_go_units_days_and_weeks() -> None:
    assert parse_duration("90d") == 90 * 86400
    assert parse_duration("2w") == 14 * 86400
    assert parse_duration("1440h") == 60 * 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("250ms") == 0.25
    assert parse_duration("0") == 0
    assert format_duration(60 * 86400) == "60d"
    for bad in ("", "5", "5x", "d", "1h 30m", "-1h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_defaults_match_the_contract() -> None:
    s = load_settings({}, env={})
    assert s.http_address == "127.0.0.1:3000"
    assert s.public_url == "http://127.0.0.1:3000"
    assert s.aibridge_enabled is False
    assert s.aibridge_retention == 60 * 86400
    assert s.aibridge_openai_base_url == "https://api.openai.com/v1/"
    assert s.aibridge_anthropic_base_url == "https://api.anthropic.com/"
    assert s.aibridge_bedrock_model == "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert s.aibridge_circuit_breaker_failure_threshold == 5
    assert s.aibridge_circuit_breaker_interval == 10
    assert s.prometheus_address == "127.0.0.1:2112"
    assert s.database_url.startswith("sqlite+aiosqlite:///")
    assert s.database_url.endswith("/.local/share/aibridge/aibridge.db")


def test_precedence_flag_over_env_over_yaml_over_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("http_address: 127.0.0.1:4000\naibridge:\n  retention: 2w\n  rate_limit: 3\n"
                   "  max_concurrency: 7\n")
    env = {"CODER_AIBRIDGE_RETENTION": "10d", "CODER_AIBRIDGE_RATE_LIMIT": "5"}
    s = load_settings({"aibridge_rate_limit": "9"}, env=env, config_path=str(cfg))
    assert s.aibridge_rate_limit == 9           # flag
    assert s.aibridge_retention == 10 * 86400    # env beats YAML
    assert s.http_address == "127.0.0.1:4000"    # YAML beats default
    assert s.aibridge_max_concurrency == 7
    assert s.aibridge_circuit_breaker_timeout == 30  # default


def test_config_path_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("aibridge:\n  enabled: true\n  openai_key: sk-yaml\n")
    s = load_settings({}, env={"CODER_CONFIG_PATH": str(cfg)})
    assert s.aibridge_enabled is True
    assert [p.name for p in s.providers] == ["openai"]
    assert isinstance(s.providers[0], HTTPProviderConfig)
    assert s.providers[0].key == "sk-yaml"


@pytest.mark.parametrize(("env", "fragment"), [
    ({"CODER_AIBRIDGE_RETENTION": "5x"}, "CODER_AIBRIDGE_RETENTION: invalid duration '5x'"),
    ({"CODER_HTTP_ADDRESS": "nope"}, "CODER_HTTP_ADDRESS: invalid address 'nope'"),
    ({"CODER_AIBRIDGE_ENABLED": "maybe"}, "CODER_AIBRIDGE_ENABLED: invalid boolean 'maybe'"),
    ({"CODER_AIBRIDGE_MAX_CONCURRENCY": "-1"}, "CODER_AIBRIDGE_MAX_CONCURRENCY: must not be negative"),
    ({"CODER_AIBRIDGE_OPENAI_BASE_URL": "ftp://x"}, "CODER_AIBRIDGE_OPENAI_BASE_URL: invalid URL"),
    ({"CODER_PG_CONNECTION_URL": "mysql://x"}, "--postgres-url: unsupported URL"),
    ({"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY": "AKID"},
     "--aibridge-bedrock-region: Bedrock needs a region"),
    ({"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_BEDROCK_REGION": "us-east-1",
      "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY": "AKID"}, "--aibridge-bedrock-access-key: set both"),
    ({"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_PROVIDER_0_TYPE": "gemini"},
     "CODER_AIBRIDGE_PROVIDER_0_TYPE: must be one of openai, anthropic"),
    ({"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_PROVIDER_0_TYPE": "openai"},
     "CODER_AIBRIDGE_PROVIDER_0_KEY: provider 'openai' needs an API key"),
    ({"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_PROVIDER_0_TYPE": "openai",
      "CODER_AIBRIDGE_PROVIDER_0_KEY": "k", "CODER_AIBRIDGE_PROVIDER_2_TYPE": "openai"},
     "CODER_AIBRIDGE_PROVIDER_1_TYPE: provider indices must be contiguous"),
    ({"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_PROVIDER_0_TYPE": "openai",
      "CODER_AIBRIDGE_PROVIDER_0_KEY": "k", "CODER_AIBRIDGE_PROVIDER_0_NAME": "sessions"},
     "CODER_AIBRIDGE_PROVIDER_0_NAME: 'sessions' cannot be a provider name"),
    ({"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_OPENAI_KEY": "k",
      "CODER_AIBRIDGE_PROVIDER_0_TYPE": "openai", "CODER_AIBRIDGE_PROVIDER_0_KEY": "k2"},
     "CODER_AIBRIDGE_PROVIDER_0_NAME: provider name 'openai' is already used by legacy options"),
])
def test_bad_configuration_names_the_option(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, env=env)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_indexed_providers() -> None:
    env = {"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_ANTHROPIC_KEY": "sk-a",
           "CODER_AIBRIDGE_PROVIDER_0_TYPE": "anthropic", "CODER_AIBRIDGE_PROVIDER_0_NAME": "anthropic-bedrock",
           "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_REGION": "eu-west-1",
           "CODER_AIBRIDGE_PROVIDER_1_TYPE": "openai", "CODER_AIBRIDGE_PROVIDER_1_NAME": "litellm",
           "CODER_AIBRIDGE_PROVIDER_1_KEY": "sk-l", "CODER_AIBRIDGE_PROVIDER_1_BASE_URL": "http://127.0.0.1:4000/v1"}
    s = load_settings({}, env=env)
    by_name = {p.name: p for p in s.providers}
    assert list(by_name) == ["anthropic", "anthropic-bedrock", "litellm"]
    assert [(p.kind, p.type) for p in s.providers] == [
        ("anthropic", "anthropic"), ("bedrock", "anthropic"), ("openai", "openai")]
    bedrock = by_name["anthropic-bedrock"]
    assert isinstance(bedrock, BedrockProviderConfig)
    assert bedrock.base_url == bedrock.bedrock.endpoint == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert bedrock.bedrock.model == "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert by_name["litellm"].base_url == "http://127.0.0.1:4000/v1"
    assert isinstance(by_name["anthropic"], HTTPProviderConfig)


def test_secret_values_never_appear_in_help() -> None:
    from click.testing import CliRunner

    from aibridge.cli.main import cli

    result = CliRunner().invoke(cli, ["server", "--help"],
                                env={"CODER_AIBRIDGE_OPENAI_KEY": "sk-very-secret", "COLUMNS": "200"})
    assert result.exit_code == 0
    assert "sk-very-secret" not in result.output
    packed = "".join(result.output.split())   # help text wraps at any width
    for opt in OPTIONS:
        assert opt.flag in packed
        assert opt.env in packed


def test_configuration_docs_are_in_sync() -> None:
    from aibridge.cli.docs import render_configuration_docs

    docs = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert docs.read_text() == render_configuration_docs(), "run: python -m aibridge.cli.docs > docs/configuration.md"


def test_workers_option_auto_count_and_sources(tmp_path: Path) -> None:
    from aibridge.config import usable_cpus

    assert load_settings({}, env={}).workers == usable_cpus() >= 1    # default: auto
    assert load_settings({}, env={"CODER_AIBRIDGE_WORKERS": "3"}).workers == 3
    assert load_settings({"workers": "1"}, env={"CODER_AIBRIDGE_WORKERS": "3"}).workers == 1
    config = tmp_path / "c.yaml"
    config.write_text("aibridge:\n  workers: 4\n  uvloop: false\n")
    from_yaml = load_settings({}, env={}, config_path=str(config))
    assert (from_yaml.workers, from_yaml.uvloop) == (4, False)
    for bad in ("-2", "many"):
        with pytest.raises(ConfigError, match="CODER_AIBRIDGE_WORKERS: invalid worker count"):
            load_settings({}, env={"CODER_AIBRIDGE_WORKERS": bad})


# ---------------------------------------------------------------- AI Gateway aliases

SAMPLES = {"str": "x-value", "bool": "true", "int": "7", "float": "2.5", "duration": "5d",
           "address": "127.0.0.1:9", "url": "http://example.test", "redact": "upstream", "path": "/tmp/x",
           "cidrs": "10.0.0.0/8", "workers": "2", "budget_policy": "highest"}
ALIASED = [opt for opt in OPTIONS if opt.alias_env]


def test_every_aibridge_option_has_an_ai_gateway_alias() -> None:
    for opt in OPTIONS:
        if opt.env.startswith("CODER_AIBRIDGE_"):
            assert opt.alias_env == "CODER_AI_GATEWAY_" + opt.env.removeprefix("CODER_AIBRIDGE_")
        if opt.flag.startswith("--aibridge-"):
            assert opt.alias_flag == "--ai-gateway-" + opt.flag.removeprefix("--aibridge-")
    assert len(ALIASED) > 20 and all(opt.kind in SAMPLES for opt in OPTIONS)


@pytest.mark.parametrize("opt", ALIASED, ids=lambda o: o.alias_env)
def test_alias_variable_and_flag_are_read(opt: Option) -> None:
    value = SAMPLES[opt.kind]
    expected = getattr(load_config(env={opt.env: value}, storage_only=True), opt.key)
    assert getattr(load_config(env={opt.alias_env: value}, storage_only=True), opt.key) == expected
    if opt.alias_key:
        assert getattr(load_config({opt.alias_key: value}, env={}, storage_only=True), opt.key) == expected


@pytest.mark.parametrize("opt", ALIASED, ids=lambda o: o.alias_env)
def test_aibridge_name_wins_over_alias_with_a_warning(opt: Option, caplog: pytest.LogCaptureFixture) -> None:
    value = SAMPLES[opt.kind]
    other = opt.default if opt.default and opt.default != value else {"bool": "false", "redact": "off"}.get(
        opt.kind, "0" if opt.kind in ("int", "float", "duration") else "y-other")
    if opt.kind == "address":
        other = "127.0.0.1:10"
    elif opt.kind == "url":
        other = "http://other.test"
    expected = getattr(load_config(env={opt.env: value}, storage_only=True), opt.key)
    with caplog.at_level(logging.WARNING, "aibridge.config"):
        both = load_config(env={opt.env: value, opt.alias_env: other}, storage_only=True)
    assert getattr(both, opt.key) == expected
    assert f"both {opt.env} and {opt.alias_env} are set; using {opt.env}" in caplog.text
    if opt.alias_key:
        caplog.clear()
        with caplog.at_level(logging.WARNING, "aibridge.config"):
            flagged = load_config({opt.key: value, opt.alias_key: other}, env={}, storage_only=True)
        assert getattr(flagged, opt.key) == expected
        assert f"both {opt.flag} and {opt.alias_flag} are given" in caplog.text


def test_alias_flags_reach_the_settings_through_the_cli() -> None:
    from aibridge.cli.main import cli
    from aibridge.cli.options import settings_from

    command = cli.commands["server"]
    ctx = command.make_context("server", ["--ai-gateway-retention", "5d", "--ai-gateway-redact", "off"])
    settings = settings_from(dict(ctx.params), storage_only=True)
    assert settings.aibridge_retention == 5 * 86400 and settings.aibridge_redact == "off"
    assert "--ai-gateway-" not in command.get_help(ctx)      # kept out of --help, documented instead


def test_indexed_provider_aliases(caplog: pytest.LogCaptureFixture) -> None:
    env = {"CODER_AIBRIDGE_ENABLED": "true",
           "CODER_AI_GATEWAY_PROVIDER_0_TYPE": "openai", "CODER_AI_GATEWAY_PROVIDER_0_KEY": "sk-alias",
           "CODER_AIBRIDGE_PROVIDER_0_KEY": "sk-primary", "CODER_AI_GATEWAY_PROVIDER_0_NAME": "gw"}
    with caplog.at_level(logging.WARNING, "aibridge.config"):
        [provider] = load_config(env=env, provider_kinds=PROVIDER_KINDS).providers
    assert isinstance(provider, HTTPProviderConfig)
    assert (provider.type, provider.name, provider.key) == ("openai", "gw", "sk-primary")
    assert "using CODER_AIBRIDGE_PROVIDER_0_KEY" in caplog.text


def test_alias_errors_name_the_alias() -> None:
    with pytest.raises(ConfigError, match=r"^CODER_AI_GATEWAY_RETENTION: invalid duration"):
        load_config(env={"CODER_AI_GATEWAY_RETENTION": "soon"}, storage_only=True)


# ---------------------------------------------------------------- netserve (issue 20): listeners, YAML keys, URLs

def test_proxy_listens_on_loopback_by_default() -> None:
    assert load_settings({}, env={}).aibridge_proxy_listen_addr == "127.0.0.1:8888"
    every = load_settings({}, env={"CODER_AIBRIDGE_PROXY_LISTEN_ADDR": ":8888"})
    assert every.aibridge_proxy_listen_addr == "0.0.0.0:8888"   # a bare port: every interface, as asked


def test_listener_options_defaults() -> None:
    s = load_settings({}, env={})
    assert (s.aibridge_header_timeout, s.aibridge_idle_timeout) == (10, 75)
    assert (s.aibridge_max_connections, s.aibridge_listen_backlog) == (10000, 65535)


@pytest.mark.parametrize(("text", "message"), [
    ("aibridge:\n  retentoin: 90d\n",
     "config aibridge.retentoin: unknown key; did you mean 'retention'?"),
    ("http_adress: 127.0.0.1:1\n", "config http_adress: unknown key; did you mean 'http_address'?"),
    ("aibridge:\n  proxy_listen-adr: x\n",
     "config aibridge.proxy_listen-adr: unknown key; did you mean 'proxy_listen_addr'?"),
    ("aibridge:\n  zzz: 1\n", "config aibridge.zzz: unknown key (known: "),
    ("aibridge:\n  enabled: true\n  providers:\n  - type: openai\n    key: k\n    base_ulr: https://x/\n",
     "config aibridge.providers[0].base_ulr: unknown key; did you mean 'base_url'?"),
    ("aibridge:\n  enabled: true\n  openai_key: k\n  mcp_servers:\n  - id: a\n    url: https://x/\n"
     "    tool_alow_regex: x\n",
     "config aibridge.mcp_servers[0].tool_alow_regex: unknown key; did you mean 'tool_allow_regex'?"),
    ("aibridge:\n  budgets:\n  - role: member\n    period: day\n    limit: 5\n",
     "config aibridge.budgets[0].limit: unknown key; did you mean 'limit_usd'?"),
    ("aibridge:\n  model_rules:\n    alias:\n    - {from: a, to: b}\n",
     "config aibridge.model_rules.alias: unknown key; did you mean 'aliases'?"),
    ("aibridge:\n  prices:\n    gpt-9:\n      inptu: 1\n      output: 2\n",
     "config aibridge.prices.gpt-9.inptu: unknown key; did you mean 'input'?"),
])
def test_unknown_yaml_keys_are_refused(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings({}, env={}, config_path=str(cfg))
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_yaml_key_exits_2_with_one_line(tmp_path: Path) -> None:
    from tests.harness import run_cli
    cfg = tmp_path / "c.yaml"
    cfg.write_text("aibridge:\n  retentoin: 90d\n")
    done = run_cli(["server", "--config", str(cfg)], {"CODER_AIBRIDGE_DATA_DIR": str(tmp_path / "d")})
    assert done.returncode == 2
    assert done.stderr.strip() == "error: config aibridge.retentoin: unknown key; did you mean 'retention'?"


def test_every_known_yaml_key_is_accepted(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("http-address: 127.0.0.1:4000\naibridge:\n  retention: 2w\n  workers: 1\n  enabled: true\n"
                   "  providers:\n  - {type: openai, name: o2, key: k, base_url: 'https://x/v1/'}\n"
                   "  - {type: anthropic, name: br, bedrock_region: us-east-1, bedrock_access_key: a,\n"
                   "     bedrock_access_key_secret: b, bedrock_model: m, bedrock_small_fast_model: s}\n"
                   "  - {type: copilot, name: cp, plan: business}\n"
                   "  mcp_servers:\n  - {id: a, url: 'https://x/', authorization: t, tool_allow_regex: x,\n"
                   "     tool_deny_regex: y}\n"
                   "  prices:\n    gpt-9: {input: 1, output: 2, cache_read: 0.1, cache_write: 1}\n"
                   "  budgets:\n  - {user: u, period: day, limit_usd: 5}\n"
                   "  model_rules:\n    allow:\n    - {role: member, models: ['gpt-*']}\n"
                   "    aliases:\n    - {from: a, to: b, provider: o2}\n")
    s = load_settings({}, env={}, config_path=str(cfg))
    assert [p.name for p in s.providers] == ["o2", "br", "cp"]


@pytest.mark.parametrize(("env", "option"), [
    ({"CODER_AIBRIDGE_OPENAI_KEY": "k", "CODER_AIBRIDGE_OPENAI_BASE_URL": "https://u:secret-pw@gw.example/v1/"},
     "--aibridge-openai-base-url"),
    ({"CODER_AIBRIDGE_ANTHROPIC_KEY": "k", "CODER_AIBRIDGE_ANTHROPIC_BASE_URL": "https://u:secret-pw@gw.example/"},
     "--aibridge-anthropic-base-url"),
    ({"CODER_AIBRIDGE_BEDROCK_BASE_URL": "https://u:secret-pw@bedrock.example/",
      "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY": "a", "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY_SECRET": "b"},
     "--aibridge-bedrock-base-url"),
    ({"CODER_AIBRIDGE_PROVIDER_0_TYPE": "openai", "CODER_AIBRIDGE_PROVIDER_0_KEY": "k",
      "CODER_AIBRIDGE_PROVIDER_0_BASE_URL": "https://secret-pw@gw.example/v1/"}, "CODER_AIBRIDGE_PROVIDER_0_BASE_URL"),
    ({"CODER_AIBRIDGE_PROVIDER_0_TYPE": "anthropic", "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_REGION": "us-east-1",
      "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_ACCESS_KEY": "a", "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_ACCESS_KEY_SECRET": "b",
      "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_BASE_URL": "https://u:secret-pw@b.example/"},
     "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_BASE_URL"),
])
def test_credentials_in_a_provider_base_url_are_refused(env: dict[str, str], option: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, env={"CODER_AIBRIDGE_ENABLED": "true", **env})
    message = str(info.value)
    assert message.startswith(f"{option}: the URL holds credentials (user:password@)"), message
    assert "secret-pw" not in message and "\n" not in message
