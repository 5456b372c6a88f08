"""Route graphs (eip.server.graph): node ids, the SVG's structure and geometry, escaping and
redaction, Mermaid syntax, and the example routes drawn by a real browser (Debian's chromium)."""

from __future__ import annotations

import base64
import itertools
import json as jsonlib
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from eip import (
    Context,
    RedeliveryPolicy,
    RouteBuilder,
    RouteDefinitionError,
    body,
    collect_bodies,
    dead_letter_channel,
    header,
    otherwise,
    pipeline,
    when,
)
from eip.cli import load_builders
from eip.dataformats import json
from eip.dsl.model import RouteModel
from eip.server.graph import (
    node_id_for_step_path,
    nodes,
    render_mermaid,
    render_svg,
)
from eip.server.graph_layout import NODE_W

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"


def is_b2b(ex: Any) -> bool:
    return True


def is_cn(ex: Any) -> bool:
    return False


def enrich_with(original: Any, reply: Any) -> Any:
    return original


class AllKinds(RouteBuilder):
    """Every step kind eip has, nested where they nest."""

    def configure(self) -> None:
        self.on_exception(ValueError, KeyError).handled().to("log:handled").set_body("failed")
        self.error_handler(
            dead_letter_channel("seda:dead", redelivery=RedeliveryPolicy(max_redeliveries=2))
        )
        (
            self.from_("seda:orders")
            .route_id("all-kinds")
            .description("every step kind")
            .unmarshal(json())  # 1
            .filter(is_b2b)  # 2
            .choice(  # 3
                when(is_cn).set_header("region", "cn").to("mock:cn"),
                when(lambda ex: False).stop(),
                otherwise().to("mock:rest"),
            )
            .multicast("mock:m1", pipeline().transform(body()).to("mock:m2"), parallel=True)  # 4
            .recipient_list(header("to"))  # 5
            .split(body(), pipeline().marshal(json()).to("mock:part"))  # 6
            .enrich("direct:lookup", enrich_with)  # 7
            .wire_tap("seda:audit")  # 8
            .to_d("mock:{headers[region]}")  # 9
            .transform(body())  # 10
            .process(lambda ex: None)  # 11
            .marshal(json())  # 12
            .idempotent_consumer(header("id"))  # 13
            .throttle(100)  # 14
            .circuit_breaker(pipeline().to("mock:erp"), pipeline().set_body("cached"))  # 15
            .set_property("p", 1)  # 16
            .remove_header("x-*")  # 17
            .map_fields(lambda b: b)  # 18
            .log("seen {body}")  # 19
            .aggregate(header("k"), collect_bodies, completion_size=2)  # 20
            .to("mock:out")  # 21
        )


EXPECTED_IDS = [
    "all-kinds/from",
    "all-kinds/1",
    "all-kinds/2",
    "all-kinds/3",
    "all-kinds/3/when-1/1",
    "all-kinds/3/when-1/2",
    "all-kinds/3/when-2/1",
    "all-kinds/3/otherwise/1",
    "all-kinds/4",
    "all-kinds/4/output-1/1",
    "all-kinds/4/output-2/1",
    "all-kinds/4/output-2/2",
    "all-kinds/5",
    "all-kinds/6",
    "all-kinds/6/each-part/1",
    "all-kinds/6/each-part/2",
    *(f"all-kinds/{n}" for n in range(7, 15)),
    "all-kinds/15",
    "all-kinds/15/protected/1",
    "all-kinds/15/fallback/1",
    *(f"all-kinds/{n}" for n in range(16, 22)),
    "all-kinds/on-exception-1",
    "all-kinds/on-exception-1/1",
    "all-kinds/on-exception-1/2",
    "all-kinds/dead-letter",
]


def models_of(*builders: RouteBuilder, validate: bool = True) -> list[RouteModel]:
    context = Context()
    context.add_routes(*builders)
    if validate:
        context.validate()  # the routes drawn are real, compilable routes
    return context.route_models


def route_builder(configure: Callable[[RouteBuilder], Any]) -> RouteBuilder:
    class Built(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return Built()


def parse(svg: str) -> Any:
    return etree.fromstring(svg.encode())


def svg_nodes(root: Any, route: str | None = None) -> list[Any]:
    scope = root if route is None else route_group(root, route)
    return [g for g in scope.iter(f"{SVG}g") if g.get("class") == "node"]


def route_group(root: Any, route: str) -> Any:
    (group,) = [g for g in root.iter(f"{SVG}g") if g.get("data-route") == route]
    return group


def svg_edges(root: Any, route: str) -> list[Any]:
    return [p for p in route_group(root, route).iter(f"{SVG}path") if p.get("class") == "edge"]


def position(node: Any) -> tuple[float, float]:
    match = re.fullmatch(r"translate\(([-\d.]+),([-\d.]+)\)", node.get("transform"))
    assert match is not None
    return float(match.group(1)), float(match.group(2))


# -- node ids -------------------------------------------------------------------------------


def test_every_step_kind_is_a_node_with_its_path_as_id() -> None:
    (model,) = models_of(AllKinds())
    infos = nodes(model)
    assert [info.id for info in infos] == EXPECTED_IDS
    kinds = {info.id: info.kind for info in infos}
    assert kinds["all-kinds/3"] == "choice"
    assert kinds["all-kinds/3/when-2/1"] == "stop"
    assert kinds["all-kinds/9"] == "to_d"
    assert kinds["all-kinds/20"] == "aggregate"
    assert kinds["all-kinds/on-exception-1"] == "on_exception"
    assert kinds["all-kinds/dead-letter"] == "dead_letter_channel"
    uris = {info.id: info.uri for info in infos if info.uri is not None}
    assert uris == {
        "all-kinds/from": "seda:orders",
        "all-kinds/3/when-1/2": "mock:cn",
        "all-kinds/3/otherwise/1": "mock:rest",
        "all-kinds/4/output-1/1": "mock:m1",
        "all-kinds/4/output-2/2": "mock:m2",
        "all-kinds/6/each-part/2": "mock:part",
        "all-kinds/7": "direct:lookup",
        "all-kinds/8": "seda:audit",
        "all-kinds/9": "mock:{headers[region]}",
        "all-kinds/15/protected/1": "mock:erp",
        "all-kinds/21": "mock:out",
        "all-kinds/on-exception-1/1": "log:handled",
        "all-kinds/dead-letter": "seda:dead",
    }
    labels = {info.id: info.label for info in infos}
    assert labels["all-kinds/2"] == "is_b2b"
    assert labels["all-kinds/11"] == "<lambda>"  # not test_graph.AllKinds.configure.<locals>...
    assert labels["all-kinds/on-exception-1"] == "ValueError, KeyError (handled)"


def test_compiler_step_paths_map_to_node_ids() -> None:
    (model,) = models_of(AllKinds())
    assert node_id_for_step_path(model, "3 > when 1 > 2") == "all-kinds/3/when-1/2"
    assert node_id_for_step_path(model, "4 > output 2 > 1") == "all-kinds/4/output-2/1"
    assert node_id_for_step_path(model, "6 > each part > 2") == "all-kinds/6/each-part/2"
    assert node_id_for_step_path(model, "15 > fallback > 1") == "all-kinds/15/fallback/1"
    # The steps after an aggregate are compiled as its downstream, numbered from 1 again.
    assert node_id_for_step_path(model, "20 (downstream) > 1") == "all-kinds/21"
    # A wire tap's send has no node of its own: it is the tap's.
    assert node_id_for_step_path(model, "8 > tap > 1") == "all-kinds/8"
    clause = model.on_exceptions[0].describe()
    assert node_id_for_step_path(model, f"{clause} > 2") == "all-kinds/on-exception-1/2"
    assert node_id_for_step_path(model, "dead_letter_channel") == "all-kinds/dead-letter"
    assert node_id_for_step_path(model, "") == "all-kinds/from"


def test_a_real_compile_error_names_the_node_it_happened_in() -> None:
    def configure(b: RouteBuilder) -> None:
        (
            b.from_("seda:in")
            .route_id("broken")
            .to("mock:a")
            .choice(when(is_cn).to("mock:ok"), when(is_b2b).log("x").log("y", level=12345))
        )

    context = Context()
    context.add_routes(route_builder(configure))
    with pytest.raises(RouteDefinitionError) as caught:
        context.validate()
    assert caught.value.step is not None
    (model,) = context.route_models
    assert node_id_for_step_path(model, caught.value.step) == "broken/2/when-2/2"


# -- SVG ------------------------------------------------------------------------------------


def test_svg_has_one_node_per_step_with_its_id_and_a_counter_slot() -> None:
    (model,) = models_of(AllKinds())
    root = parse(render_svg([model]))
    assert root.tag == f"{SVG}svg"
    found = svg_nodes(root)
    assert [g.get("id") for g in found] == EXPECTED_IDS
    for g in found:
        assert g.get("data-node") == g.get("id")
        (counter,) = [t for t in g.iter(f"{SVG}text") if t.get("class") == "counter"]
        assert counter.get("data-node") == g.get("id")
        assert counter.text is None  # empty until the console fills it
        assert g.find(f"{SVG}rect").get("rx") is not None  # rounded
        kind = next(t for t in g.iter(f"{SVG}text") if t.get("class") == "kind")
        assert kind.text == g.get("data-kind").replace("_", " ")
    title = next(t for t in root.iter(f"{SVG}text") if t.get("class") == "route-title")
    assert title.text == "all-kinds"
    # Self-contained: no scripts, stylesheets, fonts or links to fetch.
    for element in root.iter():
        assert etree.QName(element).localname not in {"script", "style", "image", "use", "a"}
        assert not any("href" in name for name in element.attrib)
        assert "url(" not in (element.get("style") or "")


def test_linear_route_has_an_edge_between_each_pair_of_steps() -> None:
    def configure(b: RouteBuilder) -> None:
        (b.from_("seda:a").route_id("line").set_header("x", 1).transform(body()).to("mock:b"))

    (model,) = models_of(route_builder(configure))
    root = parse(render_svg([model]))
    found = svg_nodes(root, "line")
    edges = svg_edges(root, "line")
    assert len(found) == 4
    assert len(edges) == len(found) - 1
    ids = [g.get("id") for g in found]
    assert [(e.get("data-source"), e.get("data-target")) for e in edges] == list(
        itertools.pairwise(ids)
    )
    for edge in edges:
        assert edge.get("marker-end") == "url(#eip-arrow)"
        assert re.fullmatch(r"M[\d.]+,[\d.]+( L[\d.]+,[\d.]+)+", edge.get("d"))
    # Top to bottom on one axis.
    xs = {position(g)[0] for g in found}
    ys = [position(g)[1] for g in found]
    assert len(xs) == 1
    assert ys == sorted(ys)
    assert len(set(ys)) == 4


def test_branches_stand_side_by_side_and_join_below() -> None:
    (model,) = models_of(AllKinds())
    root = parse(render_svg([model]))
    at = {g.get("id"): position(g) for g in svg_nodes(root)}
    for firsts in (
        ["all-kinds/3/when-1/1", "all-kinds/3/when-2/1", "all-kinds/3/otherwise/1"],
        ["all-kinds/4/output-1/1", "all-kinds/4/output-2/1"],
        ["all-kinds/15/protected/1", "all-kinds/15/fallback/1"],
    ):
        xs = [at[n][0] for n in firsts]
        assert len({at[n][1] for n in firsts}) == 1, firsts  # same row
        assert xs == sorted(xs)
        assert all(b - a >= NODE_W for a, b in itertools.pairwise(xs)), xs  # no overlap
    # The branches hang below their head, and the route goes on below the tallest branch.
    assert at["all-kinds/3/when-1/1"][1] > at["all-kinds/3"][1]
    assert at["all-kinds/4"][1] > at["all-kinds/3/when-1/2"][1]
    # Each branch's last step goes to the join, and the join to the next step; stop() ends.
    edges = {(e.get("data-source"), e.get("data-target")) for e in svg_edges(root, "all-kinds")}
    assert ("all-kinds/3/when-1/2", "all-kinds/3/join") in edges
    assert ("all-kinds/3/otherwise/1", "all-kinds/3/join") in edges
    assert ("all-kinds/3/join", "all-kinds/4") in edges
    assert not any(source == "all-kinds/3/when-2/1" for source, _ in edges)
    joins = [c.get("data-join") for c in root.iter(f"{SVG}circle")]
    assert joins == [
        "all-kinds/3/join",
        "all-kinds/4/join",
        "all-kinds/6/join",
        "all-kinds/15/join",
    ]
    # Error handling stands apart, right of the route.
    main_right = max(x for n, (x, _) in at.items() if "/on-exception" not in n and "dead" not in n)
    assert at["all-kinds/on-exception-1"][0] > main_right
    assert at["all-kinds/dead-letter"][0] > main_right


def test_user_text_is_escaped() -> None:
    class Sneaky:
        description = "a<b & \"c\" 'd' </text><script>x</script>\x00\x1b"

        def __call__(self, ex: Any) -> Any:
            return ex

    def configure(b: RouteBuilder) -> None:
        (
            b.from_("seda:in")
            .route_id('r<&">')
            .description('<desc> & "more" ]]>')
            .filter(Sneaky())
            .choice(when(Sneaky()).to("mock:x"), otherwise().to("mock:y"))
        )

    (model,) = models_of(route_builder(configure))
    svg = render_svg([model])
    root = parse(svg)  # well-formed despite the text
    assert "<script>" not in svg
    assert not list(root.iter("{*}script"))
    assert route_group(root, 'r<&">') is not None
    (node,) = [g for g in svg_nodes(root) if g.get("id") == 'r<&">/1']
    label = next(t for t in node.iter(f"{SVG}text") if t.get("class") == "label")
    assert label.text.startswith("a<b & \"c\" 'd' </text>")
    texts = [t.text for t in root.iter(f"{SVG}text") if t.text]
    assert '<desc> & "more" ]]>' in texts
    assert any(t.startswith('when 1: a<b & "c"') for t in texts)
    assert "\x00" not in svg
    assert "\x1b" not in svg
    mermaid = render_mermaid([model])
    check_mermaid(mermaid)
    assert "<" not in mermaid.replace("-->", "")
    assert "#lt;desc#gt; #amp; #quot;more#quot;" in mermaid


def test_credentials_are_redacted_everywhere() -> None:
    def configure(b: RouteBuilder) -> None:
        (
            b.from_("http:/in?auth=bearer&secret_env=TOKENS")
            .route_id("secrets")
            .to("http://erp:s3cret-pw@erp.local/api?api_key=k3y-value&timeout=5")
            .enrich("http://erp.local/lookup?token=t0ken-value")
            .wire_tap("rabbitmq:audit?url=amqp://guest:gu3st-pw@broker:5672/")
        )
        b.error_handler(dead_letter_channel("http://dl.local/x?password=p4ss-value"))

    # Not validated: the options that carry the secrets are made up.
    (model,) = models_of(route_builder(configure), validate=False)
    outputs = [render_svg([model]), render_mermaid([model]), repr(nodes(model))]
    for text in outputs:
        for secret in ("s3cret-pw", "k3y-value", "t0ken-value", "gu3st-pw", "p4ss-value"):
            assert secret not in text
    svg = outputs[0]
    assert "erp:***@erp.local" in svg
    (dead,) = [n for n in nodes(model) if n.kind == "dead_letter_channel"]
    assert dead.uri == "http://dl.local/x?password=***"


def test_long_uris_are_shortened_in_the_picture_and_whole_in_the_tooltip() -> None:
    uri = "file:data/" + "very-long-directory-name/" * 6 + "end"

    def configure(b: RouteBuilder) -> None:
        b.from_("seda:in").route_id("long").to(uri)

    (model,) = models_of(route_builder(configure))
    root = parse(render_svg([model]))
    (node,) = [g for g in svg_nodes(root) if g.get("id") == "long/1"]
    lines = [t.text for t in node.iter(f"{SVG}text") if t.get("class") == "label"]
    assert len(lines) == 2
    assert lines[0].startswith("file:data/")
    assert "\u2026" in lines[1]
    assert lines[1].endswith("end")
    assert all(len(line) <= 30 for line in lines)
    assert uri in node.find(f"{SVG}title").text


# -- Mermaid --------------------------------------------------------------------------------

_M_ID = r"r\d+_n\d+"
_M_LABEL = r'"(?:[^"#]|#(?:\d+|quot|lt|gt|amp);)*"'
_M_NODE = re.compile(rf"({_M_ID})(?:\(\[{_M_LABEL}\]\)|\[{_M_LABEL}\]|\{{{_M_LABEL}\}})")
_M_EDGE = re.compile(rf"({_M_ID}) -->(?:\|{_M_LABEL}\|)? ({_M_ID})")
_M_OTHER = [
    re.compile(r"flowchart TD"),
    re.compile(rf"subgraph r\d+\[{_M_LABEL}\]"),
    re.compile(r"end"),
    re.compile(r"%% [^\n]*"),
    re.compile(r"classDef eip_\w+ [\w:#,.-]+"),
    re.compile(rf"class {_M_ID}(?:,{_M_ID})* eip_\w+"),
]


def check_mermaid(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Parse Mermaid flowchart text with a small grammar; return node ids and edges."""
    defined: list[str] = []
    edges: list[tuple[str, str]] = []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0] == "flowchart TD"
    depth = 0
    for line in lines:
        if node := _M_NODE.fullmatch(line):
            defined.append(node.group(1))
        elif edge := _M_EDGE.fullmatch(line):
            edges.append((edge.group(1), edge.group(2)))
        else:
            assert any(p.fullmatch(line) for p in _M_OTHER), f"not Mermaid: {line!r}"
            depth += line.startswith("subgraph ") - (line == "end")
            assert depth >= 0
    assert depth == 0
    assert len(defined) == len(set(defined))
    for source, target in edges:
        assert source in defined
        assert target in defined
    return defined, edges


def test_mermaid_has_one_node_per_step_and_edges_along_the_route() -> None:
    def configure(b: RouteBuilder) -> None:
        b.from_("seda:a").route_id("line").set_header("x", 1).to("mock:b")

    (line, kinds) = models_of(route_builder(configure), AllKinds())
    text = render_mermaid([line, kinds])
    defined, edges = check_mermaid(text)
    assert len(defined) == len(nodes(line)) + len(nodes(kinds))
    line_edges = [(s, t) for s, t in edges if s.startswith("r1_")]
    assert line_edges == [("r1_n0", "r1_n1"), ("r1_n1", "r1_n2")]
    # Each node's line is preceded by its eip id, so docs and the console agree.
    comments = re.findall(r"%% (\S+)\n\s*(r\d+_n\d+)", text)
    assert [c for c, _ in comments] == [n.id for n in nodes(line)] + EXPECTED_IDS
    ids = dict(comments)
    # The choice fans out to its branches and each branch (not stop) goes on to step 4.
    choice, step4 = ids["all-kinds/3"], ids["all-kinds/4"]
    assert (choice, ids["all-kinds/3/when-1/1"]) in edges
    assert (choice, ids["all-kinds/3/otherwise/1"]) in edges
    assert (ids["all-kinds/3/when-1/2"], step4) in edges
    assert (ids["all-kinds/3/otherwise/1"], step4) in edges
    assert not any(s == ids["all-kinds/3/when-2/1"] for s, _ in edges)
    assert re.search(rf'{choice} -->\|"when 1: is_cn"\| {ids["all-kinds/3/when-1/1"]}', text)
    assert re.search(rf'{choice}\{{"choice: 2 whens, otherwise"\}}', text)


def test_mermaid_markdown_has_a_fenced_flowchart_per_route() -> None:
    models = models_of(AllKinds(), route_builder(lambda b: b.from_("seda:z").route_id("z")))
    text = render_mermaid(models, markdown=True)
    blocks = re.findall(r"```mermaid\n(.*?)\n```", text, flags=re.S)
    assert len(blocks) == 2
    assert re.findall(r"^## (.+)$", text, flags=re.M) == ["all-kinds", "z"]
    for block, model in zip(blocks, models, strict=True):
        defined, _ = check_mermaid(block)
        assert len(defined) == len(nodes(model))


# -- the example routes, in a real browser -----------------------------------------------------


def example_models() -> list[RouteModel]:
    context = Context()
    context.add_routes(*load_builders([str(ROOT / "routes")]))
    return context.route_models


def test_example_routes_render_in_both_forms() -> None:
    models = example_models()
    assert len(models) > 10
    root = parse(render_svg(models))
    expected = [info.id for model in models for info in nodes(model)]
    assert [g.get("id") for g in svg_nodes(root)] == expected
    assert len(set(expected)) == len(expected)
    routes = [g.get("data-route") for g in root.iter(f"{SVG}g") if g.get("data-route")]
    assert routes == [model.route_id for model in models]
    defined, _ = check_mermaid(render_mermaid(models))
    assert len(defined) == len(expected)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def run_chromium(tmp_path: Path, page: Path, *args: str) -> str:
    chromium = shutil.which("chromium")
    assert chromium, "the browser tests need Debian's chromium: apt-get install -y chromium"
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return done.stdout


# Loads the SVG as an <img> (which may fetch nothing: a picture that needed a font, a style
# sheet or a script would not draw the same), paints it on a canvas, and reads pixels back.
_PROBE = """<!doctype html><body><canvas id="c"></canvas><pre id="out">pending</pre><script>
const img = new Image();
img.onload = () => {
  const c = document.getElementById("c");
  c.width = img.width; c.height = img.height;
  const g = c.getContext("2d");
  g.fillStyle = "#fff"; g.fillRect(0, 0, c.width, c.height); g.drawImage(img, 0, 0);
  const all = g.getImageData(0, 0, c.width, c.height).data;
  let dark = 0;
  for (let i = 0; i < all.length; i += 4) if (all[i] < 120 && all[i + 1] < 120) dark++;
  const px = POINTS.map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)));
  document.getElementById("out").textContent =
    JSON.stringify({width: img.width, height: img.height, dark: dark, px: px});
};
img.onerror = () => { document.getElementById("out").textContent = "error"; };
img.src = "data:image/svg+xml;base64,SVG";
</script></body>"""


def test_example_routes_drawn_by_chromium(tmp_path: Path) -> None:
    models = example_models()
    svg = render_svg(models)
    (tmp_path / "routes.svg").write_text(svg)
    root = parse(svg)
    width, height = round(float(root.get("width"))), round(float(root.get("height")))

    # A screenshot of a page showing the picture, as an operator or a README would see it.
    page = tmp_path / "routes.html"
    page.write_text(f'<!doctype html><body style="margin:0;background:#fff">{svg}</body>')
    png = tmp_path / "routes.png"
    run_chromium(tmp_path, page, f"--screenshot={png}", f"--window-size={width},{height}")
    assert png_size(png) == (width, height)

    # Each node painted where the SVG put it, in its kind's colour: sample a clear spot of each
    # node of three kinds (right of the kind's name, above the label).
    fills = {"from": [0xD2, 0xE3, 0xFC], "to": [0xE8, 0xF0, 0xFE], "filter": [0xFE, 0xF3, 0xE0]}
    points: list[tuple[int, int]] = []
    expected: list[tuple[str, list[int]]] = []
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "route":
            rx, ry = position(group)
            for node in svg_nodes(group):
                if node.get("data-kind") in fills:
                    nx, ny = position(node)
                    points.append((round(rx + nx + NODE_W - 24), round(ry + ny + 23)))
                    expected.append((node.get("id"), fills[node.get("data-kind")]))
    probe = tmp_path / "probe.html"
    encoded = base64.b64encode(svg.encode()).decode()
    probe.write_text(_PROBE.replace("POINTS", jsonlib.dumps(points)).replace("SVG", encoded))
    dom = run_chromium(tmp_path, probe, "--virtual-time-budget=20000", "--dump-dom")
    match = re.search(r'<pre id="out">(.*?)</pre>', dom)
    assert match is not None, dom[-500:]
    result = jsonlib.loads(match.group(1))
    assert (result["width"], result["height"]) == (width, height)
    assert len(expected) > 30
    for (nid, fill), pixel in zip(expected, result["px"], strict=True):
        assert all(abs(p - f) <= 8 for p, f in zip(pixel, fill, strict=True)), (nid, pixel)
    # Not only boxes: the text and the edges are drawn in dark grey.
    assert result["dark"] > 20_000
