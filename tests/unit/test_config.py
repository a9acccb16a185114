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
    ({"CODER_AIBRIDGE_ENABLED": "true"}, "--aibridge-enabled: AI Bridge is enabled but no provider"),
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
           "cidrs": "10.0.0.0/8", "workers": "2"}
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
