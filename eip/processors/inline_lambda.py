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
"""

from __future__ import annotations

import ast
import copy
import linecache
import types
import warnings
from typing import Any

__all__ = ["inline_expression"]

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
    for node in _lambdas_at(code.co_filename, code.co_firstlineno):
        if _same_code(node, code) and _simple(node.body, param):
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


def _simple(body: ast.expr, param: str) -> bool:
    for node in ast.walk(body):
        if not isinstance(node, _ALLOWED):
            return False
        if isinstance(node, ast.Name) and node.id != param:
            return False
        if isinstance(node, ast.Call) and not isinstance(node.func, ast.Attribute):
            return False  # a method of a value; a bare name would be a global or builtin
    return True


class _Rename(ast.NodeTransformer):
    def __init__(self, param: str) -> None:
        self.param = param

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(id="ex", ctx=node.ctx) if node.id == self.param else node


def _over_ex(body: ast.expr, param: str) -> str:
    renamed = _Rename(param).visit(copy.deepcopy(body))  # the parsed tree is cached
    # Braces doubled: the text goes through str.format in the fused pipeline's inline code.
    return "(" + ast.unparse(renamed).replace("{", "{{").replace("}", "}}") + ")"
