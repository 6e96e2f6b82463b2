"""Plain-language guidance from a skin report, driven by the rule table core/data/guidance_rules.json.

Rules are data: each names a condition, optionally a zone, and a severity range [min, max).
The text describes cosmetic features and general care; it never names a disease.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

RULES_FILE = Path(__file__).parent / "data" / "guidance_rules.json"


@lru_cache(maxsize=1)
def rule_table() -> dict:
    with open(RULES_FILE, encoding="utf-8") as handle:
        return json.load(handle)


def guidance(overall: dict[str, dict] | None, zones: dict[str, dict], quality_messages: list[str]) -> list[str]:
    """Advice lines, most relevant first, ending with when to see a professional.

    Args:
        overall: condition -> {"severity": 0-100, ...} for the whole face, or None without a model.
        zones: zone -> {"conditions": {condition -> {"severity": ...}} or None}.
        quality_messages: warnings about the photo, shown first because they limit the rest.
    """
    table = rule_table()
    lines = list(quality_messages)
    if overall is None:
        lines.append(table["no_model"])
        return lines
    matched = []
    for rule in table["rules"]:
        if "zone" in rule:
            scores = (zones.get(rule["zone"]) or {}).get("conditions") or {}
            severity = (scores.get(rule["condition"]) or {}).get("severity", 0)
        else:
            severity = overall[rule["condition"]]["severity"]
        if rule["min"] <= severity < rule["max"]:
            matched.append((severity, rule["text"]))
    if matched:
        lines.extend(text for _, text in sorted(matched, key=lambda m: -m[0]))
        lines.append(table["see_a_professional"])
    else:
        lines.append(table["clear"])
    return lines


def disclaimer() -> str:
    return rule_table()["disclaimer"]
