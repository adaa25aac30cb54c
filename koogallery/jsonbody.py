"""Strict JSON parsing of bodies, and Huawei's lenient list values (spec §2.3, §2.6)."""

import json
import re
from typing import Any


class BodyError(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise BodyError(f"non-standard JSON constant {name}")


def parse_json(raw: bytes | str) -> Any:
    """UTF-8 JSON; NaN/Infinity refused; duplicate keys: last wins (json's default)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise BodyError("JSON nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise BodyError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


# A bare object key: an identifier right after `{` or `,` and before `:`.
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_$][A-Za-z0-9_$]*)(\s*:)")


def quote_bare_keys(text: str) -> str:
    """Quote bare keys outside string literals: Huawei sends `[{orgCode:"1"}]` (§4.1.5)."""
    out, pos = [], 0
    # Walk string literals and rewrite only the code between them.
    for match in re.finditer(r'"(?:[^"\\]|\\.)*"', text, flags=re.S):
        out.append(_BARE_KEY.sub(r'\1"\2"\3', text[pos : match.start()]))
        out.append(match.group(0))
        pos = match.end()
    out.append(_BARE_KEY.sub(r'\1"\2"\3', text[pos:]))
    return "".join(out)


def lenient_list(value: Any) -> list:
    """A JSON array, or a string holding one; strictly first, then with bare keys quoted."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise BodyError("expected a JSON array or a string holding one")
    try:
        parsed = parse_json(value)
    except BodyError:
        try:
            parsed = parse_json(quote_bare_keys(value))
        except BodyError as exc:
            raise BodyError(f"not a JSON array: {exc}") from exc
    if not isinstance(parsed, list):
        raise BodyError("expected a JSON array")
    return parsed


def lenient_object(value: Any) -> dict:
    """A JSON object, or a string holding one (e.g. changeInstanceCheck `productInfo`)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = parse_json(value)
        except BodyError:
            parsed = parse_json(quote_bare_keys(value))
        if isinstance(parsed, dict):
            return parsed
    raise BodyError("expected a JSON object or a string holding one")
