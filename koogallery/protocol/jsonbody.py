"""Strict JSON parsing of bodies, and Huawei's lenient list values (spec §2.3, §2.6)."""

import json
import math
import re
from collections.abc import Iterable
from itertools import chain
from typing import Any

import orjson


class BodyError(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise BodyError(f"non-standard JSON constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):  # 1e400: JSON allows it, it means Infinity here
        raise BodyError(f"number out of range: {text[:20]}")
    return value


# KooGallery's bodies nest four levels at most (authSync: body, userList, user, extension).
# Deeper input is refused here, so nothing downstream (signature forms, journal redaction,
# serializers) recurses on attacker-chosen depth.
MAX_DEPTH = 64
# A `\uD800`–`\uDFFF` escape: paired it is a character beyond the BMP, alone it is no text.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise BodyError(f"{name[:64]}: parameter repeated")
            seen.add(name)
    return obj


def parse_json(raw: bytes | str, *, unique_keys: bool = False) -> Any:
    """UTF-8 JSON; NaN/Infinity refused; duplicate keys: last wins (json's default), or
    BodyError with `unique_keys` (V1 signs `name=value` pairs: a repeated name is ambiguous,
    spec §2.3).

    Also refused (BodyError): numbers beyond a float's range or Python's 4300 integer digits,
    nesting deeper than MAX_DEPTH, unpaired surrogate escapes (such a value can be neither
    stored nor re-encoded as UTF-8).

    orjson parses first: it reads bytes as they are and takes half the stdlib's time (46
    against 94 ms for a 7.8 MB allOrgSync body, issue 17). Its value is kept only where it is
    certainly the stdlib's; otherwise `parse_json_stdlib` parses, so every value and every
    BodyError message is exactly the stdlib path's:
    - anything orjson refuses (NaN/Infinity, 1e400, surrogate escapes that do not pair,
      invalid UTF-8, a BOM, control characters in strings, trailing commas, leading zeros,
      nesting past 1024, str input holding a lone surrogate) goes to the stdlib path, which
      refuses it with its own message or accepts it;
    - orjson reads an integer beyond 64 bits as a float where json gives the int, so a value
      holding any float (KooGallery's bodies hold none), or nested deeper than MAX_DEPTH,
      goes to the stdlib path too;
    - orjson cannot report duplicate keys: `unique_keys` (V1 bodies, small) is the stdlib
      path's alone. Without it both keep the last value at the first key's place.
    orjson never yields a lone surrogate, so the re-encoding check is the stdlib path's alone.
    """
    if not unique_keys:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            if _floatless_within_depth(value):
                return value
    return parse_json_stdlib(raw, unique_keys=unique_keys)


def parse_json_stdlib(raw: bytes | str, *, unique_keys: bool = False) -> Any:
    """`parse_json` with the stdlib's json alone: the reference for every value and message."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys if unique_keys else None,
        )
    except RecursionError as exc:
        raise BodyError("JSON nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise BodyError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except BodyError:
        raise
    except ValueError as exc:  # int() of a number longer than sys.get_int_max_str_digits()
        raise BodyError("malformed JSON: number too long") from exc
    _check_depth(value)
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BodyError("malformed JSON: unpaired surrogate escape") from exc
    return value


_CONTAINERS = frozenset((dict, list))


def _floatless_within_depth(value: Any) -> bool:
    """Whether an orjson value holds no float and nests at most MAX_DEPTH deep, i.e. is the
    value the stdlib path gives. Level by level: the types of a level's children are taken
    with built-in loops alone (a level of dicts only, or of lists only, is chained in C), and
    a level that holds no container ends the walk (~13 ms for the 300,000 strings of a 100k
    orgInfoList, where a comprehension took ~20, issue 17)."""
    kind = type(value)
    if kind is not dict and kind is not list:
        return kind is not float
    level, depth = [value], 1
    while True:
        kinds = set(map(type, _children(level)))
        if float in kinds:
            return False
        if not kinds & _CONTAINERS:
            return True
        if depth >= MAX_DEPTH:
            return False  # too deep: the stdlib path refuses it
        children = _children(level)
        if kinds <= _CONTAINERS:
            level = list(children)
        else:
            level = [child for child in children if type(child) is dict or type(child) is list]
        depth += 1


def _children(level: list) -> Iterable:
    """The values of a level's dicts and the items of its lists, as one iterable."""
    kinds = set(map(type, level))
    if kinds == {dict}:
        return chain.from_iterable(map(dict.values, level))
    if kinds == {list}:
        return chain.from_iterable(level)
    return (child for item in level for child in (item.values() if type(item) is dict else item))


def _check_depth(value: Any) -> None:
    """Refuse containers nested more than MAX_DEPTH deep: level by level, containers only,
    one comprehension a level. ~18 ms for a 100k-department orgInfoList (issue 17), where a
    loop a container took 40 and the bracket count of the text that came first 8 more per 7 MB
    (it counted the brackets inside strings too, so every big call walked anyway)."""
    if type(value) is not dict and type(value) is not list:
        return
    level, depth = [value], 1
    while level:
        deeper = [
            child
            for item in level
            for child in (item.values() if type(item) is dict else item)
            if type(child) is dict or type(child) is list
        ]
        if deeper and depth >= MAX_DEPTH:
            raise BodyError(f"JSON nested deeper than {MAX_DEPTH} levels")
        level, depth = deeper, depth + 1


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


def has_nul(value: Any) -> bool:
    """U+0000 anywhere in a JSON value's strings or keys (PostgreSQL's text and jsonb refuse it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


def lenient_object(value: Any) -> dict:
    """A JSON object, or a string holding one (e.g. changeInstanceCheck `productInfo`); it is
    stored as JSON, so it may not hold U+0000."""
    if isinstance(value, str):
        try:
            value = parse_json(value)
        except BodyError:
            value = parse_json(quote_bare_keys(value))
    if isinstance(value, dict):
        if has_nul(value):
            raise BodyError("must not contain NUL characters (\\u0000)")
        return value
    raise BodyError("expected a JSON object or a string holding one")
