"""What ``ladder stages``, ``ladder rewards`` and ``ladder stages show NAME`` print.

Listings read each component's description from its source with ``ast`` (no import, so no
torch), as plain text: the first paragraph of its docstring with reST markup unwrapped.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import attrs

__all__ = ["components_table", "nested_settings", "plain_text", "stage_settings"]


def plain_text(text: str) -> str:
    """Docstring text as a terminal shows it: reST roles and literals unwrapped, one line.

    >>> plain_text("Uses :class:`~ladder.stage.StageContext` and ``max_steps``; see :func:`fit`.")
    'Uses StageContext and max_steps; see fit.'
    """

    def role(match: re.Match[str]) -> str:
        target = match.group(1).strip()
        return target[1:].rsplit(".", 1)[-1] if target.startswith("~") else target

    text = re.sub(r":[A-Za-z][\w:.-]*:`([^`<]+?)(?:\s*<[^>`]*>)?`", role, text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`]+)`__?", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    return " ".join(text.split())


def _first_paragraph(doc: str) -> str:
    paragraph = doc.strip().split("\n\n", 1)[0]
    return plain_text(paragraph)


def _doc_line(value: str, _depth: int = 0) -> str:
    """First docstring paragraph of ``module:attr``, as plain text, read from source with ``ast`` (no import)."""
    module, _, attr = value.partition(":")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return ""
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return ""
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == attr:
            return _first_paragraph(ast.get_docstring(node) or "")
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == attr for a in node.names):
            if _depth >= 3:
                return ""
            source = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                package = module if spec.submodule_search_locations else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                source = f"{package}.{source}" if source else package
            name = next(a.name for a in node.names if (a.asname or a.name) == attr)
            return _doc_line(f"{source}:{name}", _depth + 1)
    return ""


def components_table(registry_name: str) -> Any:
    """A rich table of the installed ``stages`` or ``rewards``: name, package, version, description."""
    from rich.table import Table

    from ladder import registry

    reg = getattr(registry, registry_name)
    table = Table(title=f"ladder {registry_name}", title_justify="left")
    for col in ("name", "package", "version", "description"):
        table.add_column(col)
    for entry in reg.entries():
        table.add_row(entry.name, entry.package, entry.version, _doc_line(entry.value))
    return table


def nested_settings(field: Any) -> type | None:
    """The settings class of a field whose default is itself a group of settings (``lora``)."""
    default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
    return type(default) if attrs.has(type(default)) else None


def stage_settings(name: str) -> str:
    """Every setting of stage ``name``, nested ones (``lora.r``) included: ``name: type = default``
    and its help on the next line."""
    from ladder import registry
    from ladder.configs import describe_settings

    entry = registry.stages.entry(name)
    config_cls = registry.stages.get(name).Config
    trl = getattr(config_cls, "trl_config", "")
    lines = [f"{name}: {_doc_line(entry.value) or '-'} ({entry.package} {entry.version})",
             f"settings of {config_cls.__name__}" + (f"; trainer_kwargs go to trl.{trl}" if trl else "") + ":", ""]

    def rows(cls: type, prefix: str = "") -> None:
        fields = {f.alias or f.name: f for f in attrs.fields(cls)}
        for row in describe_settings(cls):
            default = row["default"]
            shown = default if isinstance(default, str) and default else json.dumps(default)
            lines.append(f"  {prefix}{row['name']}: {row['type']} = {shown}")
            lines.append(f"      {plain_text(row['help']) or '-'}")
            nested = nested_settings(fields[row["name"]])
            if nested is not None:
                rows(nested, f"{prefix}{row['name']}.")

    rows(config_cls)
    return "\n".join(lines)
