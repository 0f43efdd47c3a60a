"""One parameter of a sweep file that wandb's sweep schema refuses, said as what to write.

The schema (sweeps 0.2.0) checks a parameter against some twenty forms at once (`anyOf`), so
its own message names none of them: "{'values': []} is not valid under any of the given
schemas". Here the common slips get their own line (an unknown key, `values` that is empty or
not a list, `min` without `max`), and otherwise the line names the key that broke the form the
parameter's `distribution` picks ("parameters.lr.min: 0 is less than or equal to the minimum
of 0.0" for log_uniform_values).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from jsonschema.exceptions import ValidationError

# Every key that some form of the schema has.
SPEC_KEYS = ("value", "values", "min", "max", "distribution", "q", "mu", "sigma", "a", "b",
             "probabilities")  # fmt: skip
FORMS = "value: X, values: [X, ...], or min and max (with a distribution)"
# Errors that say a form is not the one the parameter means, rather than what is wrong in it.
_OTHER_FORM = ("enum", "required", "additionalProperties", "const")


def spec_error(name: str, spec: Any, err: ValidationError, schema: dict[str, Any]) -> str:
    """The one line for `parameters.<name>`, whose value `spec` failed `schema` with `err`."""
    where = f"parameters.{name}"
    if not isinstance(spec, dict):
        return f"{where}: {spec!r}; a parameter is a mapping: {FORMS}"
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        return f"{where}: unknown key {unknown[0]!r}; a parameter has {FORMS}"
    values = spec.get("values")
    if "values" in spec and not isinstance(values, list):
        fix = f"values: [{values!r}] or value: {values!r}"
        return f"{where}.values: {values!r} is not a list; write {fix}"
    if values == []:
        return f"{where}.values: empty; list at least one value"
    if ("min" in spec) != ("max" in spec):
        have, lack = ("min", "max") if "min" in spec else ("max", "min")
        return f"{where}: {have} without {lack}; a range needs both"
    for leaf in _in_its_form(err):
        if leaf.relative_path:
            return f"{where}.{'.'.join(map(str, leaf.relative_path))}: {leaf.message}"
    known = sorted(_distributions(schema))
    if "distribution" in spec and spec["distribution"] not in known:
        return f"{where}.distribution: {spec['distribution']!r}; allowed: {', '.join(known)}"
    return f"{where}: {spec!r} is no form of wandb's sweep schema; a parameter has {FORMS}"


def _in_its_form(err: ValidationError) -> Iterator[ValidationError]:
    """The errors inside the forms that the parameter's keys and distribution do match."""
    forms: dict[Any, list[ValidationError]] = defaultdict(list)
    for sub in err.context or []:
        forms[sub.schema_path[0] if sub.schema_path else None].append(sub)
    for errors in forms.values():
        if any(e.validator in _OTHER_FORM for e in errors):
            continue
        for e in errors:
            if e.context:
                yield from _in_its_form(e)
            else:
                yield e


def _distributions(schema: Any) -> set[str]:
    """Every `distribution` that a form of the schema allows, from its enums."""
    found: set[str] = set()
    if isinstance(schema, dict):
        enum = schema.get("properties", {}).get("distribution", {}).get("enum", [])
        found.update(v for v in enum if isinstance(v, str))
        for value in schema.values():
            found |= _distributions(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _distributions(value)
    return found
