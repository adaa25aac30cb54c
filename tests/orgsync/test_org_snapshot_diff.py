"""A re-sync is diffed and checked for cycles from the rows it changes (issue 17): it must refuse
exactly the snapshots, with exactly the messages, and write exactly the rows that the walk over
the whole snapshot and its diff against every stored row did (`snapshot.find_cycle`,
`snapshot.plan`).

The stored departments are any a sequence of calls can leave: their parent codes have no cycle,
and each row is linked to the department its parent code names when that exists. Codes come
from a small alphabet, so that moves under a descendant, cycles through rows the snapshot keeps
as they are, parents created or dropped under waiting children all happen often.
"""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from koogallery.protocol.resultcodes import InvalidParam
from orgsync import services, snapshot, writers
from orgsync.models import Department

CODES = ["A", "B", "C", "D", "E", "F", "G"]
PARENTS = ["", "Z", *CODES]  # "Z" is never listed: a parent that does not exist
# A tab: stored rows then cannot be lines (`writers.load_items_while`).
NAMES = ["甲", "乙", "丙\t丁"]

item = st.tuples(st.sampled_from(CODES), st.sampled_from(NAMES), st.sampled_from(PARENTS))


def stored_rows(held: dict[str, tuple]) -> list[snapshot.Stored]:
    """The rows a writer leaves for these departments: ids, and parents linked by code."""
    ids = {code: 100 + n for n, code in enumerate(held)}
    return [
        (ids[code], code, name, parent, ids.get(parent)) for code, (name, parent) in held.items()
    ]


@st.composite
def stored_and_snapshot(draw):
    # Stored: each department under the top level, a code that is not stored (an orphan
    # waiting for it), or one stored before it; any forest can be listed that way.
    order = draw(st.permutations(CODES))[: draw(st.integers(1, len(CODES)))]
    held = {}
    for n, code in enumerate(order):
        parents = ["", "Z", *order[:n], *(c for c in CODES if c not in order)]
        held[code] = (draw(st.sampled_from(NAMES)), draw(st.sampled_from(parents)))
    # What KooGallery sends after edits in its console: most rows as they are, some dropped,
    # renamed, moved or added (a later repeat of a code wins), or a snapshot of its own.
    kept = [
        (code, name, parent)
        for code, (name, parent) in held.items()
        if draw(st.booleans()) or draw(st.booleans())
    ]
    listed = draw(st.one_of(st.just(kept), st.permutations(kept)))
    listed = [*listed, *draw(st.lists(item, max_size=3))]
    if draw(st.integers(0, 9)) == 0:
        listed = draw(st.lists(item, max_size=8))
    return held, snapshot.last_wins(listed)


def whole_tree(held: dict[str, tuple], items: dict) -> snapshot.Plan | str:
    """The check and diff over every department, as before issue 17: a plan or a refusal."""
    parent_of = snapshot.links(items)
    cycle = snapshot.find_cycle(parent_of)
    if cycle:
        return str(snapshot.CycleError(cycle))
    return snapshot.plan(stored_rows(held), items, parent_of)


def changed_rows(
    held: dict[str, tuple], items: dict, monkeypatch, lines: bool = False
) -> snapshot.Plan | str:
    """`_resync_plan` from the stored rows as tuples, or as lines (`writers.load_items_while`)."""
    rows = stored_rows(held)
    monkeypatch.setattr(
        writers, "load_codes", lambda tenant, codes: [row for row in rows if row[1] in codes]
    )
    triples = [(code, name, parent) for code, (name, parent) in held.items()]
    made = None
    if lines:
        triples = [snapshot.LINE.join(row) for row in triples]
        made = snapshot.as_lines(items)  # the snapshot's own, as the digest made them
    try:
        plan, _ = services._resync_plan(None, items, triples, made)
    except InvalidParam as exc:
        assert exc.code == "000002"
        return exc.message
    return plan


def comparable(outcome: snapshot.Plan | str):
    if isinstance(outcome, str):
        return outcome
    # New rows in the snapshot's order (their ids come in that order); the rest as sets.
    return outcome.create, sorted(outcome.update), sorted(outcome.delete), outcome.unchanged


@settings(max_examples=300, deadline=None)
@given(stored_and_snapshot())
def test_the_changed_rows_give_the_refusals_and_writes_of_the_whole_tree(case):
    held, items = case
    expected = comparable(whole_tree(held, items))
    # Lines only where writers.load_items_while gives them: no stored value holds a tab.
    forms = [False, True] if not any("\t" in name for name, _ in held.values()) else [False]
    for lines in forms:
        with pytest.MonkeyPatch.context() as monkeypatch:
            assert comparable(changed_rows(held, items, monkeypatch, lines)) == expected, lines


TREE = {
    "100": ("总部", ""),
    "110": ("研发部", "100"),
    "111": ("平台组", "110"),
    "112": ("应用组", "110"),
    "120": ("市场部", "100"),
    "200": ("南京分公司", ""),
    "300": ("等待部", "999"),  # waits for 999, which is not there
}


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"100": ("总部", "111")}, "parentCode cycle: 100 → 111 → 110 → 100"),
        ({"110": ("研发部", "112")}, "parentCode cycle: 110 → 112 → 110"),
        ({"111": ("平台组", "111")}, "parentCode cycle: 111 → 111"),
        # through a new department
        (
            {"110": ("研发部", "400"), "400": ("新", "112")},
            "parentCode cycle: 110 → 400 → 112 → 110",
        ),
        # through a row kept as it is, which the new department's code links
        ({"999": ("新", "300")}, "parentCode cycle: 300 → 999 → 300"),
        # two cycles: the first the whole walk meets is named
        (
            {"200": ("南京分公司", "200"), "100": ("总部", "120")},
            "parentCode cycle: 100 → 120 → 100",
        ),
    ],
    ids=["under-grandchild", "under-child", "self", "via-new", "via-waiting-row", "two"],
)
def test_a_move_that_closes_a_cycle_is_refused_as_before(edits, message, monkeypatch):
    items = snapshot.last_wins([(code, *value) for code, value in {**TREE, **edits}.items()])

    assert whole_tree(TREE, items) == message
    assert changed_rows(TREE, items, monkeypatch) == message


@given(st.lists(item, max_size=12))
def test_the_walk_over_the_snapshot_finds_a_cycle_when_the_walk_over_its_links_does(items):
    """A first load asks `has_cycle_through` from every code (no map of links built first)."""
    snap = snapshot.last_wins(items)

    found = snapshot.has_cycle_through(snap, snap)

    assert found == (snapshot.find_cycle(snapshot.links(snap)) is not None)


@given(st.lists(item, max_size=12))
def test_a_first_plan_creates_what_the_full_diff_creates_in_code_order(items):
    snap = snapshot.last_wins(items)
    parent_of = snapshot.links(snap)
    assume(snapshot.find_cycle(parent_of) is None)
    reference = snapshot.plan([], snap, parent_of)

    first = snapshot.first_plan(snap, parent_of)

    assert first.create == sorted(reference.create)
    assert (first.update, first.delete, first.writes) == ([], [], len(snap))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "odd",
    ["a\tb", "a\\b", "a\nb", "a\rb", "\\N"],
    ids=["tab", "backslash", "newline", "return", "null-marker"],
)
def test_a_resync_diffs_rows_whose_names_copy_escapes(odd):
    """PostgreSQL reads a tenant's rows with COPY as lines, unless a value needed escaping;
    either way a re-sync writes exactly what changed."""
    tree = [("100", "总部", ""), ("110", odd, "100"), ("120", "市场部", "100")]
    services.all_org_sync(tenant_id="odd", is_test=False, departments=tree)
    renamed = [("100", "总部", ""), ("110", odd, "100"), ("120", odd + "部", "100")]

    again = services.all_org_sync(tenant_id="odd", is_test=False, departments=tree[::-1])
    changed = services.all_org_sync(tenant_id="odd", is_test=False, departments=renamed)

    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 2)
    stored = Department.objects.filter(tenant__tenant_id="odd").order_by("org_code")
    assert [(d.org_code, d.org_name) for d in stored] == [(c, n) for c, n, _ in renamed]


@pytest.mark.django_db
def test_a_listed_name_with_a_tab_is_an_edit_of_a_row_without_one():
    services.all_org_sync(
        tenant_id="tabs", is_test=False, departments=[("100", "a", ""), ("110", "b\tc", "")]
    )
    services.all_org_sync(
        tenant_id="tabs", is_test=False, departments=[("100", "a", ""), ("110", "b", "")]
    )
    result = services.all_org_sync(
        tenant_id="tabs", is_test=False, departments=[("100", "a", ""), ("110", "b\tc", "")]
    )

    assert (result.updated, result.unchanged) == (1, 1)
    assert Department.objects.get(tenant__tenant_id="tabs", org_code="110").org_name == "b\tc"
