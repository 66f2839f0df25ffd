"""Generate the reference sections of ``docs/PLUGINS.md`` from the code, so the guide never drifts from it.

Two sections are generated, each between a pair of markers in the document:

* ``hooks``: every hook specification in :mod:`arbframe.kernel.hookspecs` (signature, pluggy options, docstring);
* ``interfaces``: the driver base classes of :mod:`arbframe.kernel.interfaces` (each method and property, whether a
  driver must implement it, its docstring) and the entry-point groups of :mod:`arbframe.kernel.entrypoints`.

::

    python -m arbframe.kernel.docgen            # rewrite the generated sections in docs/PLUGINS.md
    python -m arbframe.kernel.docgen --check    # exit 1 when docs/PLUGINS.md is stale (the test suite runs this)
    python -m arbframe.kernel.docgen --print    # print the generated sections

The prose around the markers is hand-written and left alone.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_DOC", "SECTIONS", "generate", "hook_reference", "interface_reference", "main", "render"]

def _checkout_doc() -> Path | None:
    """``docs/PLUGINS.md`` of the source checkout this module runs from; None when installed from a wheel (the
    parent of site-packages has no such guide, and docgen must never write outside the project)."""
    candidate = Path(__file__).resolve().parents[2] / "docs" / "PLUGINS.md"
    return candidate if (candidate.parent.parent / "pyproject.toml").is_file() and candidate.is_file() else None


DEFAULT_DOC = _checkout_doc()


def _begin(section: str) -> str:
    return f"<!-- BEGIN GENERATED {section}: python -m arbframe.kernel.docgen; edit the docstrings, not this text -->"


def _end(section: str) -> str:
    return f"<!-- END GENERATED {section} -->"


# ------------------------------------------------------------------------------------------------- formatting
def _annotation(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return ""
    if isinstance(value, str):
        return value
    return inspect.formatannotation(value)


def _signature(fn: Callable[..., Any], *, drop_self: bool = False) -> str:
    """``(a: int, *, b: str = 'x') -> bool`` with annotations exactly as written in the source."""
    sig = inspect.signature(fn)
    parts: list[str] = []
    star_done = False
    for i, param in enumerate(sig.parameters.values()):
        if drop_self and i == 0 and param.name in ("self", "cls"):
            continue
        if param.kind is param.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if param.kind is param.VAR_POSITIONAL:
            star_done = True
            text = f"*{param.name}"
        elif param.kind is param.VAR_KEYWORD:
            text = f"**{param.name}"
        else:
            text = param.name
        ann = _annotation(param.annotation)
        if ann:
            text += f": {ann}"
        if param.default is not inspect.Parameter.empty:
            text += f" = {param.default!r}" if ann else f"={param.default!r}"
        parts.append(text)
    ret = _annotation(sig.return_annotation)
    return f"({', '.join(parts)})" + (f" -> {ret}" if ret else "")


def _doc(obj: Any) -> str:
    return inspect.cleandoc(obj.__doc__) if getattr(obj, "__doc__", None) else ""


def _first_paragraph(text: str) -> str:
    return " ".join(text.split("\n\n", 1)[0].split())


# ------------------------------------------------------------------------------------------------------ hooks
def hook_specs() -> list[tuple[str, Callable[..., Any], dict[str, Any]]]:
    """(name, function, pluggy options) of every hook specification, in source order."""
    from arbframe.kernel import hookspecs

    found = []
    for name, fn in vars(hookspecs).items():
        options = getattr(fn, "arbframe_spec", None)
        if options is not None and inspect.isfunction(fn):
            found.append((name, fn, dict(options)))
    return sorted(found, key=lambda item: item[1].__code__.co_firstlineno)


def hook_reference() -> str:
    specs = hook_specs()
    lines = [
        "| hook | summary |",
        "|------|---------|",
    ]
    for name, fn, options in specs:
        summary = _first_paragraph(_doc(fn)).replace("|", "/")
        if options.get("historic"):
            summary += " *(historic)*"
        lines.append(f"| [`{name}`](#{name}) | {summary} |")
    for name, fn, options in specs:
        lines += ["", f"#### `{name}`", "", "```python", f"def {name}{_signature(fn)}", "```", ""]
        flags = [k for k in ("historic", "firstresult", "warn_on_impl") if options.get(k)]
        if flags:
            lines += [f"*pluggy options: {', '.join(flags)}*", ""]
        lines.append(_doc(fn) or "(undocumented)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- interfaces
def _members(cls: type) -> list[tuple[str, str, str, bool, str]]:
    """(name, kind, signature, must implement, first docstring paragraph) of the members ``cls`` defines."""
    abstract: frozenset[str] = getattr(cls, "__abstractmethods__", frozenset())
    rows = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            if value.fget is None:
                continue
            ret = _annotation(inspect.signature(value.fget).return_annotation)
            rows.append((name, "property", f"-> {ret}" if ret else "", name in abstract,
                         _first_paragraph(_doc(value.fget))))
        elif isinstance(value, (classmethod, staticmethod)):
            fn = value.__func__
            rows.append((name, "classmethod", _signature(fn, drop_self=True), name in abstract,
                         _first_paragraph(_doc(fn))))
        elif inspect.isfunction(value):
            kind = "async method" if inspect.iscoroutinefunction(value) else "method"
            rows.append((name, kind, _signature(value, drop_self=True), name in abstract,
                         _first_paragraph(_doc(value))))
    return rows


def interface_reference() -> str:
    from arbframe.kernel.entrypoints import COMMAND_GROUP, DRIVER_GROUPS, PLUGIN_GROUP
    from arbframe.kernel.interfaces import (
        API_VERSION,
        Cache,
        Driver,
        Exchange,
        FxSource,
        MarketData,
        Storage,
        Trading,
    )

    lines = [
        f"Kernel plugin API version: **{API_VERSION}**.",
        "",
        "| entry-point group | entry-point name | value |",
        "|-------------------|------------------|-------|",
    ]
    bases = {"storage": Storage, "cache": Cache, "exchange": Exchange, "fx": FxSource}
    for kind, group in DRIVER_GROUPS.items():
        what = "`MarketData` (read-only) or `Exchange`" if kind == "exchange" else f"`{bases[kind].__name__}`"
        lines.append(f"| `{group}` | the config value | a subclass of {what} (`module:Class`) |")
    lines.append(f"| `{PLUGIN_GROUP}` | the plugin's name | a module with hook implementations |")
    lines.append(f"| `{COMMAND_GROUP}` | the sub-command | a module implementing `arbframe_register_commands` |")
    for cls in (Driver, Storage, Cache, FxSource, MarketData, Trading, Exchange):
        parents = [b.__name__ for b in cls.__bases__ if b is not object and b.__name__ != "ABC"]
        base = f"({', '.join(parents)})" if parents and cls is not Driver else ""
        lines += ["", f"#### `{cls.__name__}{base}`", "", _first_paragraph(_doc(cls)), ""]
        members = _members(cls)
        if not members:
            continue
        lines += ["| member | kind | signature | must implement | notes |", "|---|---|---|---|---|"]
        for name, kind, sig, required, doc in members:
            cell = f"`{sig}`".replace("|", "\\|") if sig else ""
            lines.append(f"| `{name}` | {kind} | {cell} | {'**yes**' if required else 'no'} | "
                         f"{doc.replace('|', '/')} |")
    return "\n".join(lines)


SECTIONS: dict[str, Callable[[], str]] = {"hooks": hook_reference, "interfaces": interface_reference}


# ---------------------------------------------------------------------------------------------------- the doc
def generate() -> dict[str, str]:
    return {name: build() for name, build in SECTIONS.items()}


def render(text: str, generated: dict[str, str] | None = None) -> str:
    """``text`` with every generated section replaced by its current content (markers must be present)."""
    generated = generate() if generated is None else generated
    for name, body in generated.items():
        pattern = re.compile(re.escape(_begin(name)) + r"\n.*?" + re.escape(_end(name)), re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"missing markers for the generated section {name!r}:\n{_begin(name)}\n{_end(name)}")
        replacement = f"{_begin(name)}\n{body}\n{_end(name)}"
        text = pattern.sub(lambda _m: replacement, text)  # noqa: B023 - used at once, in this iteration
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arbframe.kernel.docgen", description=__doc__.split("\n\n")[0])
    default = f"default {DEFAULT_DOC}" if DEFAULT_DOC is not None else "required outside a source checkout"
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC, help=f"the guide to update ({default})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if the guide is stale; change nothing")
    mode.add_argument("--print", action="store_true", help="print the generated sections")
    args = parser.parse_args(argv)
    if args.print:
        for name, body in generate().items():
            print(f"{_begin(name)}\n{body}\n{_end(name)}\n")
        return 0
    if args.doc is None:
        print("docgen: not running from a source checkout; pass --doc path/to/docs/PLUGINS.md", file=sys.stderr)
        return 2
    try:
        current = args.doc.read_text(encoding="utf-8")
        updated = render(current)
    except (OSError, ValueError) as exc:
        print(f"docgen: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if updated != current:
            print(f"docgen: {args.doc} is stale; run `python -m arbframe.kernel.docgen` and commit the result",
                  file=sys.stderr)
            return 1
        print(f"docgen: {args.doc} is up to date")
        return 0
    if updated != current:
        args.doc.write_text(updated, encoding="utf-8")
        print(f"docgen: updated {args.doc}")
    else:
        print(f"docgen: {args.doc} already up to date")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
