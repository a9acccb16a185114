"""MCP server settings and the names of injected tools."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from aibridge.bridge.providers import PROVIDER_KINDS
from aibridge.config import ConfigError, McpServerConfig, Settings
from aibridge.config import load_settings as load_config
from aibridge.mcp.servers import McpTool
from aibridge.mcp.tools import MAX_NAME, name_tools, tool_name
from tests.harness import run_cli


def load_settings(flags: dict[str, Any] | None = None, *, env: dict[str, str],
                  config_path: str | None = None) -> Settings:
    return load_config(flags, env, config_path, provider_kinds=PROVIDER_KINDS)


BASE = {"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_OPENAI_KEY": "sk-x"}


def servers(env: dict[str, str], config: Path | None = None) -> tuple[McpServerConfig, ...]:
    return load_settings(env={**BASE, **env}, config_path=str(config) if config else None).mcp_servers


def test_servers_from_indexed_variables() -> None:
    found = servers({
        "CODER_AIBRIDGE_MCP_SERVER_0_ID": "coder", "CODER_AIBRIDGE_MCP_SERVER_0_URL": "https://mcp.example/mcp",
        "CODER_AIBRIDGE_MCP_SERVER_0_AUTHORIZATION": "Bearer t0k",
        "CODER_AIBRIDGE_MCP_SERVER_0_TOOL_ALLOW_REGEX": "^coder_",
        "CODER_AIBRIDGE_MCP_SERVER_0_TOOL_DENY_REGEX": "delete",
        "CODER_AIBRIDGE_MCP_SERVER_1_ID": "docs", "CODER_AIBRIDGE_MCP_SERVER_1_URL": "http://127.0.0.1:9/mcp",
    })
    assert [(s.id, s.url, s.authorization) for s in found] == [
        ("coder", "https://mcp.example/mcp", "Bearer t0k"), ("docs", "http://127.0.0.1:9/mcp", "")]
    coder = found[0]
    assert coder.offers("coder_list_workspaces")
    assert not coder.offers("coder_delete_workspace")     # deny beats allow
    assert not coder.offers("other_tool")                 # not allowed
    assert found[1].offers("anything")                    # neither: every tool


def test_servers_from_yaml(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("aibridge:\n  mcp_servers:\n    - id: coder\n      url: http://127.0.0.1:1/mcp\n"
                      "      tool_deny_regex: '^x'\n")
    (found,) = servers({}, config)
    assert found.id == "coder" and found.deny == re.compile("^x") and found.allow is None


@pytest.mark.parametrize(("env", "message"), [
    ({"CODER_AIBRIDGE_MCP_SERVER_0_ID": "a", "CODER_AIBRIDGE_MCP_SERVER_0_URL": "http://h/mcp",
      "CODER_AIBRIDGE_MCP_SERVER_0_TOOL_ALLOW_REGEX": "(unclosed"},
     "CODER_AIBRIDGE_MCP_SERVER_0_TOOL_ALLOW_REGEX: invalid regular expression '(unclosed'"),
    ({"CODER_AIBRIDGE_MCP_SERVER_0_ID": "a", "CODER_AIBRIDGE_MCP_SERVER_0_URL": "http://h/mcp",
      "CODER_AIBRIDGE_MCP_SERVER_0_TOOL_DENY_REGEX": "[z-a]"},
     "CODER_AIBRIDGE_MCP_SERVER_0_TOOL_DENY_REGEX: invalid regular expression"),
    ({"CODER_AIBRIDGE_MCP_SERVER_0_ID": "a", "CODER_AIBRIDGE_MCP_SERVER_0_URL": "http://h/mcp",
      "CODER_AIBRIDGE_MCP_SERVER_1_ID": "a", "CODER_AIBRIDGE_MCP_SERVER_1_URL": "http://h/mcp"},
     "CODER_AIBRIDGE_MCP_SERVER_1_ID: MCP server ID 'a' is already used by CODER_AIBRIDGE_MCP_SERVER_0_ID"),
    ({"CODER_AIBRIDGE_MCP_SERVER_0_ID": "Bad ID", "CODER_AIBRIDGE_MCP_SERVER_0_URL": "http://h/mcp"},
     "CODER_AIBRIDGE_MCP_SERVER_0_ID: 'Bad ID' is not a valid MCP server ID"),
    ({"CODER_AIBRIDGE_MCP_SERVER_0_URL": "http://h/mcp"},
     "CODER_AIBRIDGE_MCP_SERVER_0_ID: '' is not a valid MCP server ID"),
    ({"CODER_AIBRIDGE_MCP_SERVER_0_ID": "a", "CODER_AIBRIDGE_MCP_SERVER_0_URL": "ftp://h/mcp"},
     "CODER_AIBRIDGE_MCP_SERVER_0_URL: invalid URL 'ftp://h/mcp'"),
    ({"CODER_AIBRIDGE_MCP_SERVER_0_ID": "a", "CODER_AIBRIDGE_MCP_SERVER_0_URL": "http://h:port/mcp"},
     "CODER_AIBRIDGE_MCP_SERVER_0_URL: invalid port in URL"),
    ({"CODER_AIBRIDGE_MCP_SERVER_0_ID": "a"}, "CODER_AIBRIDGE_MCP_SERVER_0_URL: invalid URL ''"),
    ({"CODER_AIBRIDGE_MCP_SERVER_1_ID": "a", "CODER_AIBRIDGE_MCP_SERVER_1_URL": "http://h/mcp"},
     "CODER_AIBRIDGE_MCP_SERVER_0_ID: MCP server indices must be contiguous from 0"),
    ({"CODER_AIBRIDGE_MCP_SERVER_0_ID": "a", "CODER_AIBRIDGE_MCP_SERVER_0_URL": "http://h/mcp",
      "CODER_AIBRIDGE_MCP_SERVER_0_TOOL_ALLOWREGEX": "x"},
     "CODER_AIBRIDGE_MCP_SERVER_0_TOOL_ALLOWREGEX: unknown MCP server setting"),
])
def test_bad_server_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        servers(env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_yaml_errors_name_the_yaml_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("aibridge:\n  mcp_servers:\n    - id: a\n      url: not-a-url\n")
    with pytest.raises(ConfigError, match=r"^config aibridge.mcp_servers\[0\].url: invalid URL"):
        servers({}, config)


def test_iteration_limit_defaults_to_ten() -> None:
    assert load_settings(env=BASE).aibridge_mcp_max_iterations == 10
    assert load_settings(env={**BASE, "CODER_AIBRIDGE_MCP_MAX_ITERATIONS": "3"}).aibridge_mcp_max_iterations == 3


def _tool(server: str, name: str) -> McpTool:
    return McpTool(McpServerConfig(server, "http://h/mcp"), name, "", {})


def test_tool_names_and_shortening() -> None:
    assert tool_name("coder", "coder_list_workspaces") == "bmcp_coder_coder_list_workspaces"
    long_a, long_b = "a" * 70 + "_one", "a" * 70 + "_two"
    short_a, short_b = tool_name("srv", long_a), tool_name("srv", long_b)
    assert len(short_a) == len(short_b) == MAX_NAME
    assert short_a != short_b and short_a == tool_name("srv", long_a)      # deterministic, distinct
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", tool_name("srv", "dotted.name/with spaces"))
    # a tool whose cleaned name equals another's still gets its own name
    offered = name_tools([_tool("srv", "a.b"), _tool("srv", "a_b"), _tool("srv", long_a), _tool("srv", long_b)])
    names = [name for name, _ in offered.tools]
    assert names == sorted(names) and len(set(names)) == 4
    assert {t.name for t in offered.by_name.values()} == {"a.b", "a_b", long_a, long_b}


def test_offered_tools_are_sorted_by_name_whatever_the_order() -> None:
    tools = [_tool("zeta", "x"), _tool("alpha", "y"), _tool("alpha", "b")]
    first, second = name_tools(tools), name_tools(list(reversed(tools)))
    assert [n for n, _ in first.tools] == ["bmcp_alpha_b", "bmcp_alpha_y", "bmcp_zeta_x"]
    assert first == second


def test_servers_from_flags_replace_the_variables() -> None:
    env = {**BASE, "CODER_AIBRIDGE_MCP_SERVER_0_ID": "fromenv", "CODER_AIBRIDGE_MCP_SERVER_0_URL": "http://e/mcp"}
    flags = {"mcp_servers": ['{id: coder, url: "http://h:1/mcp", tool_deny_regex: "^x"}',
                             '{"id": "docs", "url": "https://d/mcp", "authorization": "Bearer z"}']}
    found = load_settings(flags, env=env).mcp_servers
    assert [(s.id, s.url, s.authorization) for s in found] == [("coder", "http://h:1/mcp", ""),
                                                              ("docs", "https://d/mcp", "Bearer z")]
    assert found[0].deny == re.compile("^x")
    with pytest.raises(ConfigError, match=r"^--aibridge-mcp-server\[1\].url: invalid URL 'ftp://d'"):
        load_settings({"mcp_servers": ["{id: a, url: 'http://h/mcp'}", "{id: b, url: 'ftp://d'}"]}, env=BASE)
    with pytest.raises(ConfigError, match=r"^--aibridge-mcp-server\[0\]: must be a mapping"):
        load_settings({"mcp_servers": ["just-a-string"]}, env=BASE)


def test_server_refuses_a_bad_mcp_flag_with_one_line(tmp_path: Path) -> None:
    result = run_cli(["server", "--aibridge-mcp-server", "{id: a, url: 'http://h/mcp', tool_allow_regex: '(x'}"],
                     {**BASE, "CODER_AIBRIDGE_DATA_DIR": str(tmp_path)}, timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip().startswith(
        "error: --aibridge-mcp-server[0].tool_allow_regex: invalid regular expression '(x'")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
