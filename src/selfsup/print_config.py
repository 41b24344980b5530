"""`selfsup pretrain --print-config`: the configuration a run would use, each value with where it came from.

A value comes from, highest first: a command-line flag, the --config file (or, for --resume, the run's own
config.yaml), the recipe sized to the data and this machine (`selfsup.sizing`, for the values left open), the
method's recipe (its paper's values, or a CPU preset that says why), or the option's own default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from selfsup.config import PretrainConfig, build_config, option_classes
from selfsup.options import describe
from selfsup.sizing import continuing


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: values compare alike whether they came from YAML or a dataclass."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def value_sources(final: PretrainConfig, unsized: PretrainConfig, flags: dict[str, Any], flag: Callable[[str], str],
                  files: list[tuple[dict[str, Any], str]]) -> list[tuple[str, Any, str]]:
    """(section.option, value, source) for every value of `final`. `flags` holds the values set on the command
    line, `files` (values, source name) the files below them, highest first (the --config file, the demo's
    recipe), nested by section; `unsized` is the configuration before sizing."""
    method = final.method
    recipe = build_config({"method": method}).to_dict()
    plain = {s: {name: d for name, d, *_ in describe(cls)} for s, cls in option_classes().items()}
    before = unsized.to_dict()
    rows = []
    for section, values in final.to_dict().items():
        if not isinstance(values, dict):
            rows.append((section, values, _source(section, None, flags, flag, files) or "default"))
            continue
        for name, value in values.items():
            src = _source(section, name, flags, flag, files)
            if src is None and _plain(before.get(section, {}).get(name)) != _plain(value):
                src = "the continuing recipe (--init)" if final.backbone.init and continuing.sets(
                    f"{section}.{name}") else "sized to the data and this machine"
            if src is None and _plain(recipe.get(section, {}).get(name)) != _plain(plain.get(section, {}).get(name)):
                src = f"the {method} recipe"
            rows.append((f"{section}.{name}", value, src or "default"))
    return rows


def _source(section: str, name: str | None, flags: dict[str, Any], flag: Callable[[str], str],
            files: list[tuple[dict[str, Any], str]]) -> str | None:
    def holds(values: dict[str, Any]) -> bool:
        return section in values if name is None else name in (values.get(section) or {})

    if holds(flags):
        return f"flag {flag(section if name is None else f'{section}.{name}')}"
    return next((where for values, where in files if holds(values)), None)


def render(rows: list[tuple[str, Any, str]]) -> str:
    """YAML of the configuration, each value followed by its source as a comment."""
    lines, section = [], None
    for path, value, src in rows:
        head, _, name = path.partition(".")
        text = yaml.safe_dump(_plain(value), default_flow_style=True, width=10**6).strip().removesuffix("\n...")
        if not name:
            lines.append(f"{head}: {text}  # {src}")
            continue
        if head != section:
            lines.append(f"{head}:")
            section = head
        lines.append(f"  {name}: {text}  # {src}")
    return "\n".join(lines)
