"""What an allOrgSync snapshot changes, computed in Python before anything is written (§2.6).

Pure functions, shared by the PostgreSQL and the portable writer so both apply exactly the same
semantics: the writers only decide *how* rows are written, never *which*.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import compress, filterfalse
from operator import not_

from .serializers import OrgItem


class CycleError(ValueError):
    def __init__(self, path: list[str]):
        self.path = path
        shown = path if len(path) <= 8 else [*path[:4], "…", *path[-3:]]
        super().__init__("parentCode cycle: " + " → ".join(shown))


# A department row as the writers read it back: (id, org_code, org_name, parent_code,
# parent_id). A plain tuple: building 100k named tuples costs more than the query.
Stored = tuple[int, str, str, str, int | None]


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
    return {item[0]: item for item in items}


LINE = "\t"  # joins a stored row's fields in the lines `writers.load_items_while` may give


@dataclass
class Lines:
    """A snapshot's items as lines "code<TAB>name<TAB>parent code" (`LINE`), in its order, as
    `writers.load_items_while` reads stored rows; `text` is them joined by newlines."""

    rows: list[str]
    text: str


def as_lines(snapshot: dict[str, OrgItem]) -> Lines | None:
    """The snapshot as `Lines`, or None when a field holds a tab, a newline or NUL (a line would
    not split back into its item). Made once, they serve the digest and the diff (`fresh`)."""
    rows = list(map(LINE.join, snapshot.values()))
    text = "\n".join(rows)
    if (
        text.count(LINE) != 2 * len(rows)
        or text.count("\n") != max(len(rows) - 1, 0)
        or "\x00" in text
    ):
        return None
    return Lines(rows, text)


def digest(snapshot: dict[str, OrgItem], lines: Lines | None = None) -> str | None:
    """SHA-256 of a snapshot after `last_wins`, in its order, as the writers see it: equal
    digests, equal departments (issue 17); None if it cannot be told apart that way.

    The text hashed is the snapshot's lines (`as_lines`; passed in when already made), which
    split back into exactly the items. A snapshot whose fields hold a tab or a newline has no
    such lines: its fields are joined with NUL instead (another prefix, so the two forms never
    meet), which the serializers refuse in every field; should NUL ever get through, the text
    is ambiguous and the snapshot gets no digest (it is then always diffed). ~25 ms for 100k.
    """
    lines = lines or as_lines(snapshot)
    if lines is not None:
        return hashlib.sha256(b"allOrgSync/2\n" + _utf8(lines.text)).hexdigest()
    text = "\x00".join(map("\x00".join, snapshot.values()))  # (3x faster than a chain)
    if text.count("\x00") != max(3 * len(snapshot) - 1, 0):
        return None
    return hashlib.sha256(b"allOrgSync/1\x00" + _utf8(text)).hexdigest()


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def links(snapshot: dict[str, OrgItem]) -> dict[str, str]:
    """code → parent code, for the departments whose parent is listed (the others are roots)."""
    return {code: item[2] for code, item in snapshot.items() if item[2] in snapshot}


def find_cycle(parents: dict[str, str]) -> list[str] | None:
    """A cycle of the parent function (self-parent included), as a path, or None. O(n): each
    code is visited once, marked with the walk that reached it first."""
    walk_of: dict[str, int] = {}
    get = parents.get
    for walk, start in enumerate(parents):
        node: str | None = start
        while node is not None and node not in walk_of:
            walk_of[node] = walk
            node = get(node)
        if node is not None and walk_of[node] == walk:  # this walk came back to itself
            path, step = [node], parents[node]
            while step != node:
                path.append(step)
                step = parents[step]
            return [*path, node]
    return None


def plan(stored: list[Stored], snapshot: dict[str, OrgItem], parent_of: dict[str, str]) -> Plan:
    """Diff the tenant's rows against a cycle-free snapshot (`parent_of` = `links(snapshot)`):
    unchanged rows are left alone."""
    code_of = {row[0]: row[1] for row in stored}
    by_code = {row[1]: row for row in stored}
    result = Plan()
    create, update = result.create, result.update
    for code, (_, name, parent_code) in snapshot.items():
        link = parent_of.get(code)
        row = by_code.get(code)
        if row is None:
            create.append((code, name, parent_code, link))
        elif (
            row[2] != name
            or row[3] != parent_code
            or (code_of.get(row[4]) if row[4] else None) != link
        ):
            update.append((row[0], name, parent_code, link))
    result.unchanged = len(snapshot) - len(create) - len(update)
    result.delete = [row[0] for row in stored if row[1] not in snapshot]
    return result


def first_plan(snapshot: dict[str, OrgItem], parent_of: dict[str, str]) -> Plan:
    """`plan` for a tenant that has no departments: every item is created, in orgCode order
    (the order the PostgreSQL writer copies them in), without looking for stored rows."""
    get = parent_of.get
    # Sorting the codes alone, then looking each up, is ~2x faster than sorting (code, item).
    create = [(code, (item := snapshot[code])[1], item[2], get(code)) for code in sorted(snapshot)]
    return Plan(create=create)


# --- a re-sync: diff and cycle check from the changed rows only (issue 17) -------------------
# The stored departments obey the model's rule: a row is linked to the department its
# `parent_code` names when that exists in the tenant, and is unlinked (an orphan, or top level)
# otherwise; and their parent links have no cycle (every writer refuses one before writing).
# So a row whose (code, name, parent code) is stored as it is listed keeps its link unless its
# parent code is created or dropped by this snapshot, and a cycle of the snapshot must pass
# through a department that is new or edited: only those need looking at.



def fresh(
    stored: list[OrgItem] | list[str], snapshot: dict[str, OrgItem], lines: Lines | None = None
) -> list[OrgItem]:
    """The items of `snapshot` that are new or edited (name or parent code), in its order;
    `stored` holds the tenant's rows as (code, name, parent code) tuples, or as lines of them
    joined by LINE, none of whose fields holds LINE (an item whose fields do has more than two
    LINEs when joined, so it matches no line: it differs from every stored row). `lines`: the
    snapshot's, when already made (`as_lines`)."""
    if stored and type(stored[0]) is str:
        items = list(snapshot.values())
        held = set(stored).__contains__
        joined = lines.rows if lines else map(LINE.join, items)
        return list(compress(items, map(not_, map(held, joined))))
    return list(filterfalse(set(stored).__contains__, snapshot.values()))


def stored_code(row: OrgItem | str) -> str:
    """The code of a row as `fresh` takes it (a tuple, or a line)."""
    return row.partition(LINE)[0] if type(row) is str else row[0]


def relinked(snapshot: dict[str, OrgItem], moved: set[str], skip: set[str]) -> list[OrgItem]:
    """The items (not in `skip`) whose parent code is in `moved`: codes this snapshot creates
    or drops, so that a row kept as it is gains or loses its parent link."""
    if not moved:
        return []
    return [item for item in snapshot.values() if item[2] in moved and item[0] not in skip]


def has_cycle_through(snapshot: dict[str, OrgItem], starts: Iterable[str]) -> bool:
    """Whether the snapshot's parent links have a cycle reachable from `starts`: `find_cycle`'s
    walk, begun only there (each code visited once)."""
    walk_of: dict[str, int] = {}
    get = snapshot.get
    for walk, start in enumerate(starts):
        node = start
        while node not in walk_of:
            item = get(node)
            if item is None:  # a parent code not listed (or ""): the walk ends at a root
                break
            walk_of[node] = walk
            node = item[2]
        else:  # the walk met a code already walked: its own if it came back to itself
            if walk_of[node] == walk:
                return True
    return False


def plan_changes(
    snapshot: dict[str, OrgItem],
    changed: list[OrgItem],
    gone: list[str],
    rows: list[Stored],
) -> Plan:
    """`plan` for a re-sync, from the items that are new, edited or relinked (`changed`), the
    codes dropped (`gone`) and the stored rows of those codes (`rows`, for their ids): the same
    rows to write as `plan` from the whole tree (tests/orgsync/test_org_snapshot_diff.py)."""
    id_of = {row[1]: row[0] for row in rows}
    result = Plan()
    create, update = result.create, result.update
    for code, name, parent_code in changed:
        link = parent_code if parent_code in snapshot else None
        pk = id_of.get(code)
        if pk is None:
            create.append((code, name, parent_code, link))
        else:
            update.append((pk, name, parent_code, link))
    result.unchanged = len(snapshot) - len(create) - len(update)
    result.delete = [id_of[code] for code in gone]
    return result
