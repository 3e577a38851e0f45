"""Addresses, not localhost: `--bind` of `lnchaos target` and `lnchaos node` (the suite's
`--target-bind`: tests/locustfiles/test_suite_distributed.py). Beyond loopback only with an
explicit admin token (refused with a clear message otherwise, before anything is bound); the
`listening on` line carries the bound address, which child.py reads for any IPv4 address. Only
loopback addresses are ever bound here (127.0.0.2 is loopback too); the non-loopback cases are
refused at parse time, never bound.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lnchaos.cli import main as lnchaos_main
from target.cli import add_target_options
from target.cli import config_from as target_config_from
from target.common.child import LISTENING_RE, ChildServer
from target.common.server import bind_warning, check_bind, http_url, run_app
from target.node.node_app import add_node_options
from target.node.node_app import config_from as node_config_from

REFUSED = "is not a loopback address"


def _target_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_target_options(parser)
    return parser.parse_args(argv)


def _node_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_node_options(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("command", ["target", "node"])
def test_a_non_loopback_bind_without_admin_token_is_refused(command, capsys):
    with pytest.raises(SystemExit) as refused:
        lnchaos_main([command, "--bind", "10.1.2.3", "--port", "0"])
    message = str(refused.value.code)
    assert "--bind 10.1.2.3 is not a loopback address" in message
    assert "needs an explicit --admin-token" in message
    assert "generated token is refused" in message
    assert "listening on" not in capsys.readouterr().out  # refused before anything was bound


def test_the_parsers_refuse_it_too_and_accept_it_with_a_token():
    for parse, config_from in ((_target_args, target_config_from), (_node_args, node_config_from)):
        with pytest.raises(SystemExit, match=REFUSED):
            config_from(parse(["--bind", "10.1.2.3"]))
        with pytest.raises(SystemExit, match=REFUSED):
            config_from(parse(["--bind", "0.0.0.0"]))
        with pytest.raises(SystemExit, match="must be an IP address"):
            config_from(parse(["--bind", "localhost"]))
        assert parse([]).bind == "127.0.0.1"
        config_from(parse(["--bind", "127.0.0.2"]))  # loopback: a generated token is fine
        config_from(parse(["--bind", "::1"]))
        assert config_from(parse(["--bind", "10.1.2.3", "--admin-token", "T"])).admin_token == "T"


def test_run_app_refuses_before_it_makes_the_app():
    def make_app(config):
        raise AssertionError("the app must not be made for a refused bind")

    config = SimpleNamespace(admin_token="")
    with pytest.raises(SystemExit, match=REFUSED):
        run_app(make_app, config, port=0, name="x", log_level="WARNING", host="192.168.7.7")
    assert config.admin_token == ""  # no token was generated for it


def test_check_bind_warning_and_url():
    assert check_bind("127.0.0.3", None) == "127.0.0.3"
    assert check_bind("[::1]", None) == "::1"
    assert check_bind("10.1.2.3", "T") == "10.1.2.3"
    assert bind_warning("127.0.0.2", "lnchaos target") is None
    warning = bind_warning("10.1.2.3", "lnchaos target")
    assert warning is not None and "\n" not in warning
    assert warning.startswith("warning: lnchaos target binds 10.1.2.3, not loopback")
    assert http_url("127.0.0.3", 80) == "http://127.0.0.3:80"
    assert http_url("::1", 80) == "http://[::1]:80"


@pytest.mark.parametrize(
    "line, url",
    [
        (b"lnchaos target listening on http://127.0.0.1:8080\n", "http://127.0.0.1:8080"),
        (b"x listening on http://127.0.0.3:5\r\n", "http://127.0.0.3:5"),
        (b"x listening on http://10.20.30.255:65535\n", "http://10.20.30.255:65535"),
        (b"x listening on http://256.1.1.1:80\n", None),  # not an octet
        (b"x listening on http://10.0.0.01:80\n", None),  # a leading zero
        (b"x listening on http://1.2.3:80\n", None),  # three octets
        (b"x listening on http://1.2.3.4:80/path\n", None),  # more on the line
        (b"x listening on http://1.2.3.4:123456\n", None),  # not a port
        (b"x listening on http://example.com:80\n", None),  # not an address
    ],
)
def test_the_listening_line_is_any_ipv4_address(line, url):
    found = LISTENING_RE.search(line)
    assert (found.group(1).decode() if found else None) == url


def test_the_target_serves_on_the_bound_address_and_says_so(tmp_path: Path):
    command = [sys.executable, "-m", "target", "--bind", "127.0.0.2", "--port", "0"]
    with ChildServer(command, log_path=tmp_path / "target.log") as server:
        server.start(health_path="/health")
        assert server.url.startswith("http://127.0.0.2:"), server.log_tail()
        assert "warning" not in server.log_text()  # loopback: no warning
