"""A TLS listener (and SASL EXTERNAL) added to the local RabbitMQ at run time, then removed.

The shared broker (3.10, ``listeners.tcp.local = 127.0.0.1:5672`` only) is changed in ways a
test can undo, with as few ``rabbitmqctl`` calls as possible (about a second each):

setup (one ``rabbitmqctl eval``, plus ``rabbitmq-plugins enable --online
rabbitmq_auth_mechanism_ssl`` when the plugin is not active yet):

- two TLS listeners on free ports of 127.0.0.1 (``rabbit_networking:start_ssl_listener``):
  ``port`` with a server certificate for localhost/127.0.0.1 and ``wrong_name_port`` with one
  for ``wrong-name.invalid``, both signed by the test's CA, which also verifies client
  certificates (``verify_peer``; ``fail_if_no_peer_cert`` false, so PLAIN logins work too);
- a vhost of the test's own, a user named like the client certificate's CN, and permissions
  for that user and guest in that vhost (``rabbit_vhost:add``,
  ``rabbit_auth_backend_internal:add_user`` / ``set_permissions``: what ``rabbitmqctl add_vhost
  / add_user / set_permissions -p`` call, in one round trip);
- last, ``EXTERNAL`` appended to ``rabbit``'s ``auth_mechanisms``, ``ssl_cert_login_from``
  set to ``common_name``, and ``{verify, verify_peer}`` put in ``rabbit``'s ``ssl_options``:
  the plugin reads that global setting, not the listener's, and refuses EXTERNAL ("TLS
  configuration is unsafe") without it. EXTERNAL is offered on TLS connections only, so port
  5672 is unaffected; ``ssl_options`` is read when a listener starts, so nothing running
  changes.

teardown (one ``eval``, and ``rabbitmq-plugins disable --online`` run alongside it when setup
enabled the plugin): stop both listeners, restore the three settings to what they were, delete the
user and the vhost (with its queues). Each step is caught, so one failure does not leave the
rest behind.
"""

from __future__ import annotations

import re
import socket
import subprocess
import uuid
from pathlib import Path

from tests.rabbitmq.certs import Issued, TestCA

__all__ = ["TlsBroker", "rabbitmqctl_eval"]

PLUGIN = "rabbitmq_auth_mechanism_ssl"
ACTOR = '<<"eip-tls-test">>'
CLI_TIMEOUT = 60.0


def _erl_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _erl_binary(text: str) -> str:
    return f"<<{_erl_string(text)}/utf8>>"


def rabbitmqctl_eval(expression: str) -> str:
    """Evaluate an Erlang expression on the broker node; its printed result."""
    done = subprocess.run(
        ["rabbitmqctl", "-q", "eval", expression],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl eval failed: {done.stdout}{done.stderr}")
    return done.stdout.strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _plugin_command(action: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["rabbitmq-plugins", action, "--online", PLUGIN],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen[str], what: str) -> None:
    output, _ = process.communicate(timeout=CLI_TIMEOUT)
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmq-plugins {what} failed: {output}")


class TlsBroker:
    """The broker-side state of the TLS tests; :meth:`start`, then :meth:`stop`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        suffix = uuid.uuid4().hex[:10]
        self.vhost = f"eip-tls-{suffix}"
        self.user = f"eip-tls-user-{suffix}"
        self.ca = TestCA(directory, "eip TLS test CA")
        self.server = self.ca.issue_server("server")
        self.wrong_name = self.ca.issue_server("wrong-name", "wrong-name.invalid", None)
        self.client = self.ca.issue_client("client", self.user)
        self.port = _free_port()
        self.wrong_name_port = _free_port()
        self._restore = ""  # Erlang term {Mechanisms, LoginFrom, Verify} from before setup
        self._enabled_plugin = False

    def _listener(self, port: int, issued: Issued) -> str:
        options = ", ".join(
            [
                f"{{cacertfile, {_erl_string(str(self.ca.ca_file))}}}",
                f"{{certfile, {_erl_string(str(issued.cert_file))}}}",
                f"{{keyfile, {_erl_string(str(issued.key_file))}}}",
                "{verify, verify_peer}",
                "{fail_if_no_peer_cert, false}",
            ]
        )
        return f'ok = rabbit_networking:start_ssl_listener({{"127.0.0.1", {port}}}, [{options}], 1)'

    def start(self) -> None:
        vhost, user = _erl_binary(self.vhost), _erl_binary(self.user)
        perms = '<<".*">>, <<".*">>, <<".*">>'
        steps = [
            f"Active = lists:member({PLUGIN}, rabbit_plugins:active())",
            "{ok, Mechanisms} = application:get_env(rabbit, auth_mechanisms)",
            "LoginFrom = application:get_env(rabbit, ssl_cert_login_from)",
            "{ok, Ssl} = application:get_env(rabbit, ssl_options)",
            "Verify = proplists:get_value(verify, Ssl)",
            "_ = rabbit_networking:ensure_ssl()",
            self._listener(self.port, self.server),
            self._listener(self.wrong_name_port, self.wrong_name),
            f"ok = rabbit_vhost:add({vhost}, {ACTOR})",
            f"ok = rabbit_auth_backend_internal:add_user({user}, "
            f"{_erl_binary(uuid.uuid4().hex)}, {ACTOR})",
            f"ok = rabbit_auth_backend_internal:set_permissions({user}, {vhost}, {perms}, {ACTOR})",
            f'ok = rabbit_auth_backend_internal:set_permissions(<<"guest">>, {vhost}, {perms}, '
            f"{ACTOR})",
            "ok = application:set_env(rabbit, auth_mechanisms, "
            "Mechanisms ++ (['EXTERNAL'] -- Mechanisms))",
            "ok = application:set_env(rabbit, ssl_cert_login_from, common_name)",
            "ok = application:set_env(rabbit, ssl_options, "
            "[{verify, verify_peer} | proplists:delete(verify, Ssl)])",
            "{Active, {Mechanisms, LoginFrom, Verify}}",
        ]
        try:
            result = rabbitmqctl_eval(",\n".join(steps) + ".")
            found = re.fullmatch(r"\{(true|false),(.*)\}", result, re.DOTALL)
            if found is None:
                raise RuntimeError(f"unexpected answer from the broker: {result!r}")
            self._restore = found.group(2)
            if found.group(1) == "false":
                self._enabled_plugin = True
                _finish(_plugin_command("enable"), "enable")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        disabling = _plugin_command("disable") if self._enabled_plugin else None
        vhost, user = _erl_binary(self.vhost), _erl_binary(self.user)
        steps = [
            f'catch rabbit_networking:stop_tcp_listener({{"127.0.0.1", {self.port}}})',
            f'catch rabbit_networking:stop_tcp_listener({{"127.0.0.1", {self.wrong_name_port}}})',
            f"catch rabbit_auth_backend_internal:delete_user({user}, {ACTOR})",
            f"catch rabbit_vhost:delete({vhost}, {ACTOR})",
        ]
        if self._restore:
            steps += [
                f"{{Mechanisms, LoginFrom, Verify}} = {self._restore}",
                "{ok, Now} = application:get_env(rabbit, auth_mechanisms)",
                "application:set_env(rabbit, auth_mechanisms, Now -- (['EXTERNAL'] -- Mechanisms))",
                "case LoginFrom of {ok, From} -> application:set_env(rabbit, "
                "ssl_cert_login_from, From); undefined -> application:unset_env(rabbit, "
                "ssl_cert_login_from) end",
                "{ok, Ssl} = application:get_env(rabbit, ssl_options)",
                "Kept = proplists:delete(verify, Ssl)",
                "application:set_env(rabbit, ssl_options, case Verify of undefined -> Kept; "
                "_ -> [{verify, Verify} | Kept] end)",
            ]
        try:
            rabbitmqctl_eval(",\n".join([*steps, "ok"]) + ".")
        finally:
            if disabling is not None:
                _finish(disabling, "disable")
