"""A parameter that wandb's sweep schema refuses gets one line naming the key and the fix
(localsweep/spec_errors.py), not the schema's "is not valid under any of the given schemas"."""

from __future__ import annotations

from typing import Any

import pytest

from localsweep.grid import check_sweep
from sweepmap.sweepfile import SweepError

CASES: list[tuple[Any, str]] = [
    ({"values": []}, "parameters.lr.values: empty; list at least one value"),
    ({"values": 0.1}, "parameters.lr.values: 0.1 is not a list; write values: [0.1] or value: 0.1"),
    ({"min": 0.1}, "parameters.lr: min without max; a range needs both"),
    ({"max": 0.1}, "parameters.lr: max without min; a range needs both"),
    ({"vals": [1]}, "parameters.lr: unknown key 'vals'; a parameter has value: X, values:"),
    (0.1, "parameters.lr: 0.1; a parameter is a mapping: value: X"),
    (
        {"distribution": "log_uniform_values", "min": 0, "max": 1},
        "parameters.lr.min: 0 is less than or equal to the minimum of 0",
    ),
    (
        {"distribution": "q_uniform", "min": 0, "max": 1, "q": -1},
        "parameters.lr.q: -1 is less than or equal to the minimum of 0",
    ),
    ({"distribution": "uniform", "min": "a", "max": 1}, "parameters.lr.min: 'a' is not of type"),
    ({"distribution": "beta", "a": -1, "b": 1}, "parameters.lr.a: -1 is less than"),
    ({"distribution": "bogus", "min": 0, "max": 1}, "distribution: 'bogus'; allowed: beta, categ"),
    ({"value": 1, "values": [1]}, "is no form of wandb's sweep schema; a parameter has value: X"),
]


@pytest.mark.parametrize(("spec", "line"), CASES, ids=[c[1][:40] for c in CASES])
def test_a_refused_parameter_is_said_as_what_to_write(spec: Any, line: str) -> None:
    config = {"program": "train.py", "method": "grid",
              "parameters": {"lr": spec, "seed": {"values": [0]}}}  # fmt: skip
    with pytest.raises(SweepError) as caught:
        check_sweep(config, "x.yaml")
    said = str(caught.value)
    assert said.startswith("x.yaml: ") and line in said and "\n" not in said, said
    assert "not valid under any of the given schemas" not in said
