"""Loading route files for the ``eip`` command: files, directories, packages or module names.

Every :class:`~eip.RouteBuilder` subclass defined in a loaded module (and not marked
``abstract = True``) is instantiated with no arguments. A directory with an ``__init__.py`` is
imported as a package, so its modules can import each other as ``<package>.<module>``; the
files of a plain directory are imported under their own names, with the directory on
``sys.path``, so they can import each other as ``<module>``.

A file named like a module that exists elsewhere (``logging.py``, ``json.py``, an installed
package) would be shadowed by it, or shadow it: such a file is loaded from its path under a
name of its own (``_eip_route_logging_<hash>``), with a warning that other route files cannot
import it by its name. A package directory with such a name cannot be loaded that way (its
modules import each other by the name), so it fails with a message that says so.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import logging
import pkgutil
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

from eip.dsl.builder import RouteBuilder
from eip.dsl.diagnostics import display_path

__all__ = ["LoadError", "forget_modules", "load_builders", "load_modules", "route_roots"]

log = logging.getLogger("eip.cli")


class LoadError(Exception):
    """A route module could not be imported, or a builder not created."""


def load_builders(
    paths: Sequence[str], problems: list[Exception] | None = None
) -> list[RouteBuilder]:
    """Import the given files, directories, packages or module names; return their builders.

    With ``problems``, a file that cannot be loaded or a builder that cannot be created is
    added to it and the others are still loaded (``eip check`` reports them all); without,
    the first one raises."""
    builders: list[RouteBuilder] = []
    for module in load_modules(paths, problems):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, RouteBuilder)
                and cls is not RouteBuilder
                and cls.__module__ == module.__name__
                and not cls.__dict__.get("abstract", False)
            ):
                try:
                    builders.append(cls())
                except Exception as exc:
                    error = LoadError(
                        f"{_where(cls)}: cannot create {cls.__qualname__}(): "
                        f"{type(exc).__name__}: {exc}"
                    )
                    error.__cause__ = exc
                    if problems is None:
                        raise error from exc
                    problems.append(error)
    return builders


def load_modules(paths: Sequence[str], problems: list[Exception] | None = None) -> list[ModuleType]:
    """The modules of ``paths``, in order (see :func:`load_builders` for ``problems``)."""
    modules: list[ModuleType] = []
    for target in paths:
        for loaded in _modules(target):
            if isinstance(loaded, LoadError):
                if problems is None:
                    raise loaded
                problems.append(loaded)
            else:
                modules.append(loaded)
    return modules


def _modules(target: str) -> Iterator[ModuleType | LoadError]:
    path = Path(target)
    if path.is_dir():
        if (path / "__init__.py").exists():
            package = _attempt(
                functools.partial(_import_package, path.resolve()), path.resolve().name
            )
            yield package
            if isinstance(package, LoadError):
                return
            for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
                yield _attempt(functools.partial(importlib.import_module, info.name), info.name)
        else:
            for file in sorted(path.glob("*.py")):
                if not file.name.startswith("_"):
                    yield _attempt(functools.partial(_import_file, file.resolve()), file.stem, file)
    elif path.suffix == ".py":
        if not path.exists():
            yield LoadError(f"{target}: no such file")
            return
        yield _attempt(functools.partial(_import_file, path.resolve()), path.stem, path)
    else:
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        yield _attempt(functools.partial(importlib.import_module, target), target)


def _attempt(
    load: Callable[[], ModuleType], name: str, file: Path | None = None
) -> ModuleType | LoadError:
    """``load()``, or a LoadError naming the module and the place in its file that failed."""
    try:
        module = load()
    except LoadError as exc:
        return exc
    except Exception as exc:
        where = _failing_line(exc, file)
        error = LoadError(f"cannot load {name}: {type(exc).__name__}: {exc}{where}")
        error.__cause__ = exc
        return error
    return module


def _failing_line(exc: Exception, file: Path | None) -> str:
    if isinstance(exc, SyntaxError):
        return f" ({display_path(exc.filename or '')}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    own = str(file.resolve()) if file is not None else None
    frame = next((f for f in reversed(frames) if own and f.filename == own), None)
    if frame is None:
        frame = frames[-1] if frames else None
    return f" ({display_path(frame.filename)}:{frame.lineno})" if frame else ""


def _import_file(file: Path) -> ModuleType:
    directory = str(file.parent)
    taken_by = _taken_by(file.stem, file)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    if taken_by is None:
        module = importlib.import_module(file.stem)
        if _file_of(module) == file:
            return module
        taken_by = f"at {display_path(str(_file_of(module) or module.__name__))}"
    name = f"_eip_route_{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:8]}"
    existing = sys.modules.get(name)
    if existing is not None:
        return existing
    log.warning(
        "%s is named like the module '%s' (%s): loaded as %s, so other route files cannot "
        "import it as '%s' (rename it if they must)",
        display_path(str(file)),
        file.stem,
        taken_by,
        name,
        file.stem,
    )
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_package(directory: Path) -> ModuleType:
    init = directory / "__init__.py"
    if str(directory.parent) not in sys.path:
        sys.path.insert(0, str(directory.parent))
    taken_by = _taken_by(directory.name, init)
    module = importlib.import_module(directory.name) if taken_by is None else None
    if module is not None and _file_of(module) == init:
        return module
    if module is not None:
        taken_by = f"at {display_path(str(_file_of(module) or module.__name__))}"
    raise LoadError(
        f"cannot load the package {display_path(str(directory))}: its name "
        f"'{directory.name}' is the module {taken_by}; rename the directory"
    )


def _taken_by(name: str, file: Path) -> str | None:
    """What else the module name ``name`` already means (None when it is ``file``, or not
    imported yet: the route file's directory then comes first on ``sys.path``)."""
    if name in sys.stdlib_module_names:
        return "of the standard library"
    module = sys.modules.get(name)
    if module is None or _file_of(module) == file:
        return None
    return f"at {display_path(str(_file_of(module) or name))}"


def _file_of(module: ModuleType) -> Path | None:
    origin = getattr(module, "__file__", None)
    return Path(origin).resolve() if origin else None


def _where(cls: type) -> str:
    try:
        source = inspect.getsourcefile(cls)
        line = inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return cls.__module__
    return f"{display_path(source or cls.__module__)}:{line}"


def route_roots(paths: Sequence[str]) -> list[Path]:
    """The files and directories that ``paths`` load routes from (a module name counts by its
    file, or its package's directory): what a reload re-imports and a watcher watches."""
    roots: list[Path] = []
    for target in paths:
        path = Path(target)
        if path.exists():
            roots.append(path.resolve())
            continue
        module = sys.modules.get(target)
        origin = _file_of(module) if module is not None else None
        if origin is not None:
            roots.append(origin.parent if origin.name == "__init__.py" else origin)
    return roots


def forget_modules(roots: Sequence[Path]) -> dict[str, ModuleType]:
    """Drop the modules loaded from ``roots`` out of ``sys.modules`` (with their cached byte
    code), so the next load imports them afresh; returns them, to put back if it fails.

    The byte code goes too because Python checks it against the source's size and mtime in
    whole seconds: a file edited twice in one second to the same length would otherwise load
    its old code."""
    gone: dict[str, ModuleType] = {}
    for name, module in list(sys.modules.items()):
        origin = _file_of(module) if isinstance(module, ModuleType) else None
        if origin is None or not any(origin == r or r in origin.parents for r in roots):
            continue
        gone[name] = sys.modules.pop(name)
        if origin.suffix == ".py":
            with contextlib.suppress(OSError, NotImplementedError, ValueError):
                Path(importlib.util.cache_from_source(str(origin))).unlink(missing_ok=True)
    importlib.invalidate_caches()
    return gone
