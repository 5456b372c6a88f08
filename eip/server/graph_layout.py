"""Layout of a route graph: a top-to-bottom chain, fan-outs side by side, joins below them.

Each chain is laid out in its own box, centred on one vertical axis; a fan-out puts its
branches side by side under its head, each in a dashed frame that carries its label (``when
1: is_cn``, ``each part``), all starting at the same height, and joins them again at a
junction point below the tallest (a branch without steps is a bare lane straight to it).
Edges are orthogonal polylines. The whole layout is plain numbers, so the SVG writer only
draws, and tests can check geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eip.server.graph_model import Chain, Fan, Leaf, NodeInfo, RouteGraph

__all__ = [
    "LINE_CHARS",
    "NODE_W",
    "Edge",
    "Frame",
    "Joint",
    "Placed",
    "RouteLayout",
    "layout_route",
    "node_height",
]

NODE_W = 220.0
NODE_H = 46.0
NODE_H2 = 60.0  # an endpoint whose URI takes two lines
LINE_CHARS = 30  # label characters a node's line holds (11px sans-serif)
V_GAP = 34.0  # between a node and the next one
H_GAP = 24.0  # between lanes
EMPTY_LANE = 110.0  # a branch without steps (a choice's missing otherwise)
FRAME_PAD = 10.0  # inside a branch's frame
FRAME_HEAD = 16.0  # the frame's label
PAD = 16.0
TITLE_H = 46.0
SECTION_GAP = 48.0  # between the route and its error handling
SECTION_HEAD = 22.0

Point = tuple[float, float]


@dataclass(slots=True)
class Placed:
    node: NodeInfo
    x: float  # left
    y: float  # top


@dataclass(slots=True)
class Joint:
    """Where branches meet again: drawn as a dot, not a node (it counts nothing)."""

    id: str
    x: float
    y: float


@dataclass(slots=True)
class Frame:
    """The dashed box around a branch, labelled (``when 1: is_cn``, ``each part``)."""

    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(slots=True)
class Edge:
    source: str
    target: str
    points: list[Point]
    label: str | None = None
    label_at: Point | None = None  # where the label starts (left end of its baseline)
    arrow: bool = True  # edges into a joint end without an arrowhead


@dataclass(slots=True)
class _Port:
    id: str
    x: float
    y: float


@dataclass(slots=True)
class _Box:
    width: float
    height: float
    placed: list[Placed] = field(default_factory=list)
    joints: list[Joint] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    entry: _Port | None = None
    exit: _Port | None = None
    exit_label: str | None = None

    def shifted(self, dx: float, dy: float) -> _Box:
        return _Box(
            self.width,
            self.height,
            [Placed(p.node, p.x + dx, p.y + dy) for p in self.placed],
            [Joint(j.id, j.x + dx, j.y + dy) for j in self.joints],
            [
                Edge(
                    e.source,
                    e.target,
                    [(x + dx, y + dy) for x, y in e.points],
                    e.label,
                    None if e.label_at is None else (e.label_at[0] + dx, e.label_at[1] + dy),
                    e.arrow,
                )
                for e in self.edges
            ],
            [Frame(f.x + dx, f.y + dy, f.width, f.height, f.label) for f in self.frames],
            None
            if self.entry is None
            else _Port(self.entry.id, self.entry.x + dx, self.entry.y + dy),
            None if self.exit is None else _Port(self.exit.id, self.exit.x + dx, self.exit.y + dy),
            self.exit_label,
        )

    def take(self, other: _Box) -> None:
        self.placed.extend(other.placed)
        self.joints.extend(other.joints)
        self.edges.extend(other.edges)
        self.frames.extend(other.frames)


@dataclass(slots=True)
class RouteLayout:
    route_id: str
    description: str | None
    width: float
    height: float
    placed: list[Placed]
    joints: list[Joint]
    edges: list[Edge]
    frames: list[Frame]
    #: Left edge of the error-handling section, when the route has one.
    handlers_x: float | None


def node_height(node: NodeInfo) -> float:
    """Endpoint URIs get a second line when they need it; other labels are cut to one."""
    return NODE_H2 if node.uri is not None and len(node.label) > LINE_CHARS else NODE_H


def layout_route(graph: RouteGraph) -> RouteLayout:
    """Place the route's nodes (main chain left, error handling to its right)."""
    main = _chain(graph.main).shifted(PAD, TITLE_H)
    width = PAD + main.width
    height = TITLE_H + main.height
    handlers_x = None
    if graph.handlers:
        handlers_x = width + SECTION_GAP / 2
        x = width + SECTION_GAP
        top = TITLE_H + SECTION_HEAD
        for chain in graph.handlers:
            box = _chain(chain).shifted(x, top)
            main.take(box)
            x += box.width + H_GAP
            height = max(height, top + box.height)
        width = x - H_GAP
    title_w = PAD + max(8.5 * len(graph.route_id), min(6.3 * len(graph.description or ""), 560))
    return RouteLayout(
        graph.route_id,
        graph.description,
        max(width, title_w) + PAD,
        height + PAD,
        main.placed,
        main.joints,
        main.edges,
        main.frames,
        handlers_x,
    )


def _chain(chain: Chain) -> _Box:
    parts = [_leaf(item) if isinstance(item, Leaf) else _fan(item) for item in chain.items]
    if not parts:
        return _Box(EMPTY_LANE, 0.0)
    width = max(part.width for part in parts)
    out = _Box(width, 0.0)
    y = 0.0
    previous: _Box | None = None
    for part in parts:
        placed = part.shifted((width - part.width) / 2, y)
        out.take(placed)
        if out.entry is None:
            out.entry = placed.entry
        if previous is not None and previous.exit is not None and placed.entry is not None:
            out.edges.append(_link(previous.exit, placed.entry, previous.exit_label))
        previous = placed
        y += part.height + V_GAP
    out.height = y - V_GAP
    assert previous is not None
    out.exit, out.exit_label = previous.exit, previous.exit_label
    return out


def _leaf(leaf: Leaf) -> _Box:
    port_id = leaf.node.id
    height = node_height(leaf.node)
    return _Box(
        NODE_W,
        height,
        [Placed(leaf.node, 0.0, 0.0)],
        entry=_Port(port_id, NODE_W / 2, 0.0),
        exit=None if leaf.ends else _Port(port_id, NODE_W / 2, height),
        exit_label=leaf.then,
    )


def _fan(fan: Fan) -> _Box:
    lanes = [(label, _chain(chain)) for label, chain in fan.branches]
    widths = [box.width + 2 * FRAME_PAD if box.entry else EMPTY_LANE for _, box in lanes]
    row = sum(widths) + H_GAP * (len(lanes) - 1)
    width = max(NODE_W, row)
    centre = width / 2
    head_h = node_height(fan.head)
    out = _Box(width, 0.0, [Placed(fan.head, centre - NODE_W / 2, 0.0)])
    out.entry = _Port(fan.head.id, centre, 0.0)
    fork_y = head_h + V_GAP / 2
    top = head_h + V_GAP
    inner = top + FRAME_HEAD + FRAME_PAD
    tallest = max(
        (box.height + FRAME_HEAD + 2 * FRAME_PAD for _, box in lanes if box.entry), default=0.0
    )
    join_y = top + tallest + V_GAP
    merge_y = join_y - V_GAP / 2
    joins = 0
    x = (width - row) / 2
    for (label, box), lane_w in zip(lanes, widths, strict=True):
        lane_x = x + lane_w / 2
        down = [(centre, head_h), (centre, fork_y), (lane_x, fork_y)]
        if box.entry is None:  # an empty branch goes straight to the join
            points = [*down, (lane_x, merge_y), (centre, merge_y), (centre, join_y)]
            at = (lane_x + 5, top + 12)
            out.edges.append(Edge(fan.head.id, fan.join, _clean(points), label, at, arrow=False))
            joins += 1
            x += lane_w + H_GAP
            continue
        lane = box.shifted(x + FRAME_PAD, inner)
        out.take(lane)
        frame_h = box.height + FRAME_HEAD + 2 * FRAME_PAD
        out.frames.append(Frame(x, top, lane_w, frame_h, label))
        x += lane_w + H_GAP
        assert lane.entry is not None
        points = _clean([*down, (lane_x, inner)])
        out.edges.append(Edge(fan.head.id, lane.entry.id, points, label))
        if lane.exit is not None:
            ex = lane.exit
            points = _clean([(ex.x, ex.y), (ex.x, merge_y), (centre, merge_y), (centre, join_y)])
            at = (ex.x + 5, ex.y + 14)
            out.edges.append(Edge(ex.id, fan.join, points, lane.exit_label, at, arrow=False))
            joins += 1
    if joins:
        out.joints.append(Joint(fan.join, centre, join_y))
        out.exit = _Port(fan.join, centre, join_y)
        out.height = join_y
    else:  # every branch stops: nothing continues after the fan
        out.height = top + tallest
    return out


def _link(source: _Port, target: _Port, label: str | None) -> Edge:
    if source.x == target.x:
        points = [(source.x, source.y), (target.x, target.y)]
    else:
        mid = (source.y + target.y) / 2
        points = [(source.x, source.y), (source.x, mid), (target.x, mid), (target.x, target.y)]
    return Edge(source.id, target.id, points, label, (source.x + 5, source.y + 14))


def _clean(points: list[Point]) -> list[Point]:
    """Drop repeated points and the middle of straight runs."""
    out: list[Point] = []
    for point in points:
        if out and out[-1] == point:
            continue
        if len(out) >= 2:
            (ax, ay), (bx, by) = out[-2], out[-1]
            if (ax == bx == point[0]) or (ay == by == point[1]):
                out[-1] = point
                continue
        out.append(point)
    return out
