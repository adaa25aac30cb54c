"""Unambiguous signed text (spec §2.3, "Unambiguous signed text").

A signature covers a text; the service acts on a request. Both must be the same thing: no second
request, however built, may be read back from one signed text. These rules hold that, checked
before any key is tried:

- V2: `key + nonce + timestamp + payload` runs three fields together. With the timestamp exactly
  13 digits (no leading zero) and the nonce drawn from `[A-Za-z0-9_-]`, which never holds a JSON
  object's first character, the text splits back one way only.
- V1: `name=value&…` joins the parameters. Names are identifier-shaped (no `=`, no `&`) and
  never repeat, values are scalars (a list or object is not in the join at all), and no value
  holds `&name=`, so the join reads back one way only. Null and blank values are not in the join
  either: the service reads them as it reads an absent one (`v1_reading`).

tests/koogallery/protocol/test_signed_text.py holds it as a property: accepted requests with
equal signed text are equal requests.
"""

import re
from collections.abc import Iterable, Mapping
from typing import Any

V2_TIMESTAMP = re.compile(r"[1-9][0-9]{12}")
V2_NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
V1_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# `&` then a name-shaped run then `=`: a value holding it could be read as two parameters.
V1_FOLDED = re.compile(r"&[A-Za-z][A-Za-z0-9_]*=")
V1_TOKEN = "authToken"


def v2_problem(timestamp: str, nonce: str) -> str | None:
    """Why this V2 timestamp or nonce cannot be part of an unambiguous signed text, or None."""
    if not V2_TIMESTAMP.fullmatch(timestamp):
        return "timestamp must be Unix milliseconds (13 digits)"
    if not V2_NONCE.fullmatch(nonce):
        return "nonce must be 1 to 64 characters of A-Z a-z 0-9 _ -"
    return None


def v1_text(value: Any) -> str | None:
    """A V1 value as the join writes it; None when the join skips it (null, blank)."""
    if value is None:
        return None
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return text if text.strip() else None


def v1_problem(pairs: Iterable[tuple[str, Any]], *, token_in_params: bool) -> str | None:
    """Why these V1 parameters (name, value pairs as received, repeats included) do not read
    back from their join one way only, or None. `token_in_params`: the authToken is one of them
    (basic GET); in a kit body it belongs in the header, never among the signed parameters."""
    seen: set[str] = set()
    for name, value in pairs:
        shown = name if len(name) <= 64 else name[:64] + "…"
        if not V1_NAME.fullmatch(name):
            return f"parameter name {shown!r} is not a name ([A-Za-z][A-Za-z0-9_]{{0,63}})"
        if name in seen:
            return f"{name}: parameter repeated"
        seen.add(name)
        if name == V1_TOKEN:
            if token_in_params:
                continue
            return f"{name}: goes in the authToken header, not the body"
        if isinstance(value, (dict, list)):
            return f"{name}: must be a string, a number or a boolean"
        text = v1_text(value)
        if text is not None and V1_FOLDED.search(text):
            return f"{name}: must not hold '&<name>=' (it would read as another parameter)"
    return None


def v1_reading(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters as the service reads them: every one but the authToken that the join
    holds; a null or blank one is left out, as the join leaves it out (the serializers then
    read a missing field that may be blank as blank: inbound.validate)."""
    return {
        name: value
        for name, value in params.items()
        if name != V1_TOKEN and v1_text(value) is not None
    }
