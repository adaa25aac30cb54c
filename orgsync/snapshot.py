"""What an allOrgSync snapshot changes, computed in Python before anything is written (§2.6).

Pure functions, shared by the PostgreSQL and the portable writer so both apply exactly the same
semantics: the writers only decide *how* rows are written, never *which*.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from .serializers import OrgItem


class CycleError(ValueError):
    def __init__(self, path: list[str]):
        self.path = path
        shown = path if len(path) <= 8 else [*path[:4], "…", *path[-3:]]
        super().__init__("parentCode cycle: " + " → ".join(shown))


class Stored(NamedTuple):
    """A department row as the writers read it back (a tuple: 100k of them are cheap)."""

    id: int
    org_code: str
    org_name: str
    parent_code: str
    parent_id: int | None


@dataclass
class Plan:
    """Rows to write. `link` is the org_code of the parent to link, or None for top level."""

    create: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    update: list[tuple[int, str, str, str | None]] = field(default_factory=list)
    delete: list[int] = field(default_factory=list)
    unchanged: int = 0

    @property
    def writes(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)


def last_wins(items: Iterable[OrgItem]) -> dict[str, OrgItem]:
    """Repeated orgCode: the last item counts (§2.6); insertion order of first sight is kept."""
    return {item.org_code: item for item in items}


def links(snapshot: dict[str, OrgItem]) -> dict[str, str]:
    """code → parent code, for the departments whose parent is listed (the others are roots)."""
    return {
        code: item.parent_code for code, item in snapshot.items() if item.parent_code in snapshot
    }


def find_cycle(parents: dict[str, str]) -> list[str] | None:
    """A cycle of the parent function (self-parent included), as a path, or None. O(n)."""
    done: set[str] = set()
    for start in parents:
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = start
        while node is not None and node not in done:
            if node in on_path:
                return [*path[path.index(node) :], node]
            on_path.add(node)
            path.append(node)
            node = parents.get(node)
        done.update(path)
    return None


def plan(stored: Iterable[Stored], snapshot: dict[str, OrgItem]) -> Plan:
    """Diff the tenant's rows against a cycle-free snapshot: unchanged rows are left alone."""
    parent_of = links(snapshot)
    rows = list(stored)
    code_of = {row.id: row.org_code for row in rows}
    by_code = {row.org_code: row for row in rows}
    result = Plan()
    for code, item in snapshot.items():
        link = parent_of.get(code)
        row = by_code.get(code)
        if row is None:
            result.create.append((code, item.org_name, item.parent_code, link))
        elif (
            row.org_name != item.org_name
            or row.parent_code != item.parent_code
            or (code_of.get(row.parent_id) if row.parent_id else None) != link
        ):
            result.update.append((row.id, item.org_name, item.parent_code, link))
        else:
            result.unchanged += 1
    result.delete = [row.id for row in rows if row.org_code not in snapshot]
    return result
