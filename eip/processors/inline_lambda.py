"""A user's simple lambda as an expression for the fused pipeline: no call of its own.

Predicates such as ``lambda ex: ex.body.region == "EU"`` are the commonest DSL idiom, and a call
costs more than what they compute. :func:`inline_expression` gives the lambda's body as source
over ``ex`` (the fused function's exchange), so ``filter`` and ``choice`` can run it inline.

Only a lambda that provably means the same inline qualifies:

- one positional parameter, no defaults, no closure, a plain function (``lambda`` only);
- a body built from the parameter, constants, attribute reads, subscripts, comparisons,
  boolean, arithmetic and conditional operators, and method calls on those: no other names
  (globals and builtins resolve in the lambda's module, and could be rebound), no
  comprehensions, no walrus, no lambdas inside;
- found in its source file (``linecache``), and the found ``lambda`` node compiled again gives
  exactly the lambda's bytecode, constants and names: two lambdas on one line, or a file that
  changed since it was imported, cannot be mistaken for it.

Anything else returns None, and the lambda is called as before. What differs inline is only
where a failure's traceback points: at the fused function's line (which shows the expression)
instead of the lambda's own frame; the exception, and the step it is handled at, are the same.

:func:`inline_source` also takes the lambda's module-level names (``lambda ex:
to_erp(ex.body)``, the commonest transform): each is read from the lambda's globals dict at run
time, as the lambda itself reads it, so a name rebound later (a test patching ``to_erp``) is
seen inline too. Only names that are in the module's globals when the route is compiled
qualify (a builtin such as ``len`` could later be shadowed by a global, so its lambda is still
called); a global deleted later raises ``KeyError`` naming it instead of ``NameError``.
"""

from __future__ import annotations

import ast
import copy
import linecache
import types
import warnings
from typing import Any

__all__ = ["inline_expression", "inline_source"]

#: Stands for the globals dict in unparsed source until it is given its value placeholder.
_GLOBALS = "__eip_lambda_globals__"

_ALLOWED = (
    ast.Attribute,
    ast.Subscript,
    ast.Name,
    ast.Constant,
    ast.Compare,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.IfExp,
    ast.Call,
    ast.Tuple,
    ast.Slice,
    ast.keyword,
    ast.Load,
    ast.boolop,
    ast.cmpop,
    ast.operator,
    ast.unaryop,
)

#: Parsed source files, by name and contents (a file may change on disk).
_PARSED: dict[tuple[str, int], ast.Module | None] = {}


def inline_expression(fn: Any) -> str | None:
    """``fn``'s body as source over ``ex``, or None when it cannot be inlined safely."""
    found = _inline(fn, None)
    return None if found is None else found[0]


def inline_source(fn: Any, index: int) -> tuple[str, list[Any]] | None:
    """``fn``'s body as source over ``ex`` whose module-level names are read from the value
    ``{index}`` (the lambda's globals dict), with the values to pass; None when it cannot be
    inlined safely."""
    found = _inline(fn, getattr(fn, "__globals__", None))
    if found is None:
        return None
    text, uses_globals = found
    if not uses_globals:
        return text, []
    return text.replace(_GLOBALS, f"{{{index}}}"), [fn.__globals__]


def _inline(fn: Any, module: dict[str, Any] | None) -> tuple[str, bool] | None:
    """The source over ``ex`` and whether it reads ``module`` (names allowed only with it)."""
    if not isinstance(fn, types.FunctionType) or fn.__name__ != "<lambda>":
        return None
    code = fn.__code__
    if (
        code.co_argcount != 1
        or code.co_posonlyargcount
        or code.co_kwonlyargcount
        or code.co_flags & (0x04 | 0x08)  # *args, **kwargs
        or code.co_freevars
        or code.co_cellvars
        or fn.__defaults__
        or fn.__kwdefaults__
    ):
        return None
    param = code.co_varnames[0]
    if _GLOBALS in code.co_names or _GLOBALS in code.co_varnames:
        return None
    for node in _lambdas_at(code.co_filename, code.co_firstlineno):
        if _same_code(node, code) and _simple(node.body, param, module):
            return _over_ex(node.body, param)
    return None


def _lambdas_at(filename: str, line: int) -> list[ast.Lambda]:
    lines = linecache.getlines(filename)
    if not lines:
        return []
    key = (filename, hash(tuple(lines)))
    tree = _PARSED.get(key, ...)
    if tree is ...:
        try:
            tree = ast.parse("".join(lines), filename)
        except (SyntaxError, ValueError):
            tree = None
        _PARSED[key] = tree
    if tree is None:
        return []
    return [n for n in ast.walk(tree) if isinstance(n, ast.Lambda) and n.lineno == line]


def _same_code(node: ast.Lambda, code: types.CodeType) -> bool:
    """Compiled again, the node gives the lambda's own code (bytecode, constants, names)."""
    try:
        with warnings.catch_warnings():  # its module's import said them already
            warnings.simplefilter("ignore")
            module = compile(ast.Expression(body=node), code.co_filename, "eval")
    except (SyntaxError, ValueError):
        return False
    found = [c for c in module.co_consts if isinstance(c, types.CodeType)]
    if len(found) != 1:
        return False
    again = found[0]
    return (
        again.co_code == code.co_code
        and _constants(again.co_consts) == _constants(code.co_consts)
        and again.co_names == code.co_names
        and again.co_varnames == code.co_varnames
    )


def _constants(consts: tuple[Any, ...]) -> tuple[tuple[type, str], ...]:
    """Constants compared by type and repr: ``1 == True == 1.0`` and ``0.0 == -0.0``, but
    ``x is True`` is not ``x is 1``."""
    return tuple((type(c), repr(c)) for c in consts)


def _simple(body: ast.expr, param: str, module: dict[str, Any] | None) -> bool:
    """Only allowed nodes; names other than the parameter only when in ``module``."""
    for node in ast.walk(body):
        if not isinstance(node, _ALLOWED):
            return False
        if (
            isinstance(node, ast.Name)
            and node.id != param
            and (module is None or node.id not in module)
        ):
            return False  # a builtin, or a global when globals are not allowed
        if isinstance(node, ast.Constant) and _GLOBALS in repr(node.value):
            return False  # the placeholder's stand-in must not occur in the text otherwise
    return True


class _Rename(ast.NodeTransformer):
    """The parameter becomes ``ex``; any other name a read from the globals stand-in."""

    def __init__(self, param: str) -> None:
        self.param = param
        self.reads_globals = False

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id == self.param:
            return ast.Name(id="ex", ctx=node.ctx)
        self.reads_globals = True
        return ast.Subscript(
            value=ast.Name(id=_GLOBALS, ctx=ast.Load()), slice=ast.Constant(node.id), ctx=node.ctx
        )


def _over_ex(body: ast.expr, param: str) -> tuple[str, bool]:
    rename = _Rename(param)
    renamed = rename.visit(copy.deepcopy(body))  # the parsed tree is cached
    # Braces doubled: the text goes through str.format in the fused pipeline's inline code.
    text = "(" + ast.unparse(renamed).replace("{", "{{").replace("}", "}}") + ")"
    return text, rename.reads_globals
