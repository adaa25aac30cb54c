"""Registry of basic-interface activities (spec §4.2, §4.4, §4.5).

Apps register their handlers in `AppConfig.ready()`, so the dispatching view in `production.py`
does not import domain apps:

    activities.register("getLicenseAsync", GetLicenseAsyncSerializer, views.get_license_async)

A handler takes `(data, call)` — validated data and the `Call` — calls one service and returns a
`Reply` (or None for plain success).
"""

from collections.abc import Callable
from dataclasses import dataclass

from rest_framework import serializers

from koogallery.inbound.journal import Family


@dataclass(frozen=True)
class Activity:
    name: str
    serializer_class: type[serializers.Serializer]
    handler: Callable
    family: Family
    # Reads only: the pipeline then writes the call's journal row on its own, without a
    # transaction around the handler (two round trips less; nothing to roll back).
    read_only: bool = False


_REGISTRY: dict[tuple[Family, str], Activity] = {}


def register(
    name: str,
    serializer_class: type[serializers.Serializer],
    handler: Callable,
    *,
    family: Family = Family.BASIC_V2,
    read_only: bool = False,
) -> None:
    _REGISTRY[(family, name)] = Activity(name, serializer_class, handler, family, read_only)


def lookup(family: Family, name: str) -> Activity | None:
    return _REGISTRY.get((family, name))


def names(family: Family) -> list[str]:
    return sorted(name for fam, name in _REGISTRY if fam == family)
