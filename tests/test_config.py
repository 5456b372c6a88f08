"""Configuration (eip/config.py) and property placeholders (eip/runtime/properties.py): the TOML
file, the environment laid over it, each placeholder form, typed options, and the errors a
missing property gives at start and in ``eip check``."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from eip import Context, RouteBuilder, RouteDefinitionError
from eip.components.http import HttpClientSpec, http_client
from eip.components.seda import SedaSpec
from eip.config import Config, ConfigError, ServerSettings, env_overrides, load_config
from eip.runtime.check import check_routes
from eip.runtime.properties import PlaceholderError, Properties


def _write(tmp_path: Path, text: str, name: str = "eip.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _unique(prefix: str = "EIP_TEST") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12].upper()}"


# -- the file and the environment ------------------------------------------------------------
def test_the_toml_file_gives_nested_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, '[erp]\nurl = "https://erp"\n[erp.soap]\ntimeout = 5\n')
    config = load_config(path, environ={})
    assert config.get("erp.url") == "https://erp"
    assert config.get("erp.soap.timeout") == 5
    assert config.lookup("erp.nothing") == (False, None)
    assert sorted(config.keys("erp")) == ["erp.soap.timeout", "erp.url"]
    assert config.where("erp.url") == f"erp.url in {path}"


def test_eip_toml_in_the_working_directory_is_read_when_no_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).data == {}  # none there: no settings, no error
    _write(tmp_path, '[erp]\nurl = "x"\n')
    assert load_config(environ={}).get("erp.url") == "x"


def test_a_named_file_that_is_missing_or_invalid_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*nope\.toml does not exist"):
        load_config(tmp_path / "nope.toml", environ={})
    bad = _write(tmp_path, "[erp]\nurl = \n", "bad.toml")
    with pytest.raises(ConfigError) as invalid:
        load_config(bad, environ={})
    assert str(invalid.value).startswith(f"{bad}: invalid TOML: ")
    assert "line 2" in str(invalid.value)


def test_environment_variables_override_the_file_by_one_rule(tmp_path: Path) -> None:
    path = _write(tmp_path, '[erp]\nurl = "file"\nsoap_url = "file"\n')
    environ = {
        "EIP_ERP__URL": "env",  # two underscores: a level
        "EIP_ERP__SOAP_URL": "soap",  # one underscore: part of the name
        "EIP_A__B__C": "deep",
        "EIP_ERP_URL": "not a key",  # no '__': not a key at all
        "EIP_DEMO": "0",
    }
    config = load_config(path, environ=environ)
    assert config.get("erp.url") == "env"
    assert config.get("erp.soap_url") == "soap"
    assert config.get("a.b.c") == "deep"
    assert config.lookup("erp_url") == (False, None)
    assert config.lookup("demo") == (False, None)
    assert config.where("erp.url") == "$EIP_ERP__URL"


def test_the_server_settings_keep_their_established_names() -> None:
    found = env_overrides({"EIP_HTTP_PORT": "9000", "EIP_MANAGEMENT_HOST": "127.0.0.1"})
    assert found == {
        "server.http_port": ("9000", "EIP_HTTP_PORT"),
        "server.management_host": ("127.0.0.1", "EIP_MANAGEMENT_HOST"),
    }
    both = env_overrides({"EIP_HTTP_PORT": "9000", "EIP_SERVER__HTTP_PORT": "9001"})
    assert both == {"server.http_port": ("9001", "EIP_SERVER__HTTP_PORT")}  # the full form wins


def test_a_variable_that_clashes_with_the_file_says_so(tmp_path: Path) -> None:
    path = _write(tmp_path, 'erp = "a value"\n[db]\nurl = "x"\n')
    with pytest.raises(ConfigError, match=r"\$EIP_ERP__URL sets erp\.url, but erp is a value"):
        load_config(path, environ={"EIP_ERP__URL": "y"})
    with pytest.raises(ConfigError, match=r"\$EIP_DB__URL__X sets db\.url\.x, but db\.url is"):
        load_config(path, environ={"EIP_DB__URL__X": "y"})
    with pytest.raises(ConfigError, match=r"\$EIP_ERP____URL: an empty name"):
        load_config(path, environ={"EIP_ERP____URL": "y"})


def test_server_settings_flag_over_environment_over_file_over_default(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nhttp_port = 9001\nmanagement_port = 9002\n")
    assert ServerSettings.from_config(load_config(None, environ={})).http_port == 8080
    from_file = ServerSettings.from_config(load_config(path, environ={}))
    assert (from_file.http_port, from_file.management_port) == (9001, 9002)
    config = load_config(path, environ={"EIP_HTTP_PORT": "9003"})
    assert ServerSettings.from_config(config).http_port == 9003
    assert ServerSettings.from_config(config, http_port=9004).http_port == 9004
    assert ServerSettings.from_config(config, http_port=None).management_port == 9002


def test_a_bad_or_unknown_server_setting_names_it_and_where_it_came_from(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nhttp_prot = 1\n")
    with pytest.raises(ConfigError) as unknown:
        ServerSettings.from_config(load_config(path, environ={}))
    assert f"unknown server setting 'http_prot' (server.http_prot in {path}; valid" in str(
        unknown.value
    )
    config = load_config(None, environ={"EIP_HTTP_PORT": "eighty"})
    with pytest.raises(ConfigError, match=r"http_port \(\$EIP_HTTP_PORT\): a whole number"):
        ServerSettings.from_config(config)
    config = load_config(None, environ={"EIP_SERVER__SHUTDOWN_TIMEOUT": "-1"})
    with pytest.raises(ConfigError, match="shutdown_timeout"):
        ServerSettings.from_config(config)


# -- placeholder forms -----------------------------------------------------------------------
def test_each_placeholder_form(tmp_path: Path) -> None:
    secret_file = _write(tmp_path, "  file-secret-1\n", "secret.txt")
    variable = _unique()
    config = Config({"erp": {"url": "https://erp.local", "port": 8443, "tls": True}})
    properties = Properties(config, environ={variable: "from-env"})
    assert properties.resolve("{{erp.url}}/api").value == "https://erp.local/api"
    assert properties.resolve("{{erp.port}},{{erp.tls}}").value == "8443,true"
    assert properties.resolve("{{erp.timeout:5}}").value == "5"
    assert properties.resolve(f"{{{{env:{variable}}}}}") == ("from-env", True)
    assert properties.resolve("{{env:EIP_TEST_UNSET_X:http://localhost:9000}}") == (
        "http://localhost:9000",  # the default runs to the end, colons and all; not a secret
        False,
    )
    assert properties.resolve(f"{{{{file:{secret_file}}}}}") == ("file-secret-1", True)
    # a default may itself hold a placeholder
    assert properties.resolve("{{env:EIP_TEST_UNSET_X:{{erp.url}}}}").value == "https://erp.local"


def test_config_values_may_refer_to_other_keys_but_not_to_themselves() -> None:
    config = Config(
        {"a": {"url": "http://h:{{server.http_port}}/x", "x": "{{a.y}}", "y": "{{a.x}}"}}
    )
    properties = Properties(config, environ={})
    assert properties.resolve("{{a.url}}").value == "http://h:8080/x"  # the server's default
    with pytest.raises(PlaceholderError, match=r"a\.x refers to itself \(a\.x -> a\.y -> a\.x\)"):
        properties.resolve("{{a.x}}")


def test_what_is_not_a_value_is_named() -> None:
    properties = Properties(Config({"erp": {"url": "x", "soap_url": "y"}}), environ={})
    with pytest.raises(PlaceholderError, match=r"erp is a table, not a value \(its keys: erp"):
        properties.resolve("{{erp}}")
    with pytest.raises(PlaceholderError, match=r"'\{\{erp url\}\}' is not a placeholder"):
        properties.resolve("{{erp url}}")
    with pytest.raises(PlaceholderError, match="unclosed placeholder"):
        properties.resolve("http://{{erp.url/x")
    with pytest.raises(PlaceholderError, match="cannot read /nonexistent/x: No such file"):
        properties.resolve("{{file:/nonexistent/x}}")


class _Sink(RouteBuilder):
    def configure(self) -> None:
        self.from_("seda:in").route_id("sink").to("mock:out")


async def test_uri_and_typed_options_are_resolved_and_converted_at_start() -> None:
    erp = {"url": "http://erp.local", "timeout": 5, "headers": ["x-a", "x-b"]}
    context = Context()
    context.use_config(Config({"q": {"name": "in", "size": 7}, "erp": erp}))
    # A number and a list, written as placeholders: kept as written until start.
    spec = http_client("{{erp.url}}/api", timeout="{{erp.timeout}}", copy_headers="{{erp.headers}}")
    assert isinstance(spec, HttpClientSpec)
    assert (spec.timeout, spec.copy_headers) == ("{{erp.timeout}}", "{{erp.headers}}")
    assert spec.uri.startswith("{{erp.url}}/api?copy_headers={{erp.headers}}&")
    _, resolved = context.resolve_endpoint(spec)
    assert isinstance(resolved, HttpClientSpec)
    assert (resolved.url, resolved.timeout, resolved.copy_headers) == (
        "http://erp.local/api",
        5.0,
        ["x-a", "x-b"],
    )
    _, from_uri = context.resolve_endpoint("seda:{{q.name}}?size={{q.size}}")
    assert from_uri == SedaSpec(name="in", size=7)
    context.use_config(Config({"erp": {**erp, "timeout": "soon"}}))
    with pytest.raises(RouteDefinitionError) as wrong:
        context.resolve_endpoint(spec, route_id="r", step="2")
    assert str(wrong.value).startswith("route 'r', step 2: endpoint {{erp.url}}/api?")
    assert "option 'timeout' ('{{erp.timeout}}' resolved): expected float" in str(wrong.value)


async def test_a_value_in_a_uri_query_is_the_option_exactly() -> None:
    variable = _unique()
    context = Context()
    context.use_config(Properties(Config(), environ={variable: "a&b=c#d"}))
    _, spec = context.resolve_endpoint(f"http://127.0.0.1:1/x?username={{{{env:{variable}}}}}")
    assert getattr(spec, "username", None) == "a&b=c#d"


async def test_placeholders_are_resolved_once_at_start_not_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variable = _unique()
    monkeypatch.setenv(variable, "in")

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("seda:in").route_id("take").to("mock:out")
            self.from_("direct:go").route_id("go").to(f"seda:{{{{env:{variable}}}}}")

    context = Context()
    context.add_routes(Routes())
    context.validate()  # compiles (resolves) once
    monkeypatch.setenv(variable, "elsewhere")  # changed later: not read again
    async with context:
        for _ in range(3):
            await context.template().send("direct:go", "x")
        await asyncio.wait_for(context.mock("out").wait_for(3), 5)
    assert context.mock("out").received_bodies == ["x", "x", "x"]
    (step,) = context.routes["go"].pipeline.labels
    assert step == f"seda:{{{{env:{variable}}}}}"  # shown as written


# -- a missing property: at start, and in eip check ------------------------------------------
class _Missing(RouteBuilder):
    def configure(self) -> None:
        (
            self.from_("direct:orders")
            .route_id("orders")
            .to("seda:{{orders.queue}}")
            .to("log:{{env:EIP_TEST_NEVER_SET_1}}?level={{orders.level}}")
        )


async def test_a_missing_property_fails_the_start_naming_placeholder_route_and_step() -> None:
    context = Context()
    context.use_config(Config(source="eip.toml"))
    context.add_routes(_Missing(), _Sink())
    with pytest.raises(RouteDefinitionError) as missing:
        await context.start()
    text = str(missing.value)
    assert text.endswith(
        "route 'orders', step 1: endpoint seda:{{orders.queue}}: placeholder {{orders.queue}} "
        "has no value: set queue in the [orders] table of eip.toml, or $EIP_ORDERS__QUEUE"
    )
    assert text.startswith("tests/test_config.py:")  # the file and line the route was declared
    assert isinstance(missing.value, PlaceholderError)
    assert not context.started


def test_eip_check_reports_every_missing_placeholder_without_starting() -> None:
    context = Context()
    context.add_routes(_Missing(), _Sink())
    messages = [f.message for f in check_routes(context) if f.severity == "error"]
    assert [m.split(", ", 1)[1] for m in messages[:3]] == [
        "route 'orders', step 1: endpoint seda:{{orders.queue}}: placeholder {{orders.queue}} "
        "has no value: set queue in the [orders] table of eip.toml, or $EIP_ORDERS__QUEUE",
        "route 'orders', step 2: endpoint log:{{env:EIP_TEST_NEVER_SET_1}}?level="
        "{{orders.level}}: placeholder {{env:EIP_TEST_NEVER_SET_1}}: the environment variable "
        "EIP_TEST_NEVER_SET_1 is not set (or give a default: {{env:EIP_TEST_NEVER_SET_1:value}})",
        "route 'orders', step 2: endpoint log:{{env:EIP_TEST_NEVER_SET_1}}?level="
        "{{orders.level}}: placeholder {{orders.level}} has no value: set level in the [orders]"
        " table of eip.toml, or $EIP_ORDERS__LEVEL",
    ]
    assert len(messages) == 3  # the compiler's own first error is the same line, once
    assert not context.started


def test_defaults_and_the_environment_fill_what_the_file_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EIP_ORDERS__QUEUE", "in")
    monkeypatch.setenv("EIP_TEST_NEVER_SET_1", "orders-log")
    context = Context()  # no file: a library context reads the EIP_..__.. variables
    context.use_config(Config.from_environment().with_values({"orders.level": "DEBUG"}))
    context.add_routes(_Missing(), _Sink())
    # seda:in is consumed (resolved before it is judged); direct:orders is fed from outside
    assert [f.severity for f in check_routes(context)] == ["warning"]
    _, spec = context.resolve_endpoint("log:{{env:EIP_TEST_NEVER_SET_1}}?level={{orders.level}}")
    assert (getattr(spec, "name", None), getattr(spec, "level", None)) == ("orders-log", "DEBUG")
