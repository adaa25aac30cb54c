"""Property: any sequence of singleOrgSync and allOrgSync calls leaves exactly the tree that the
rules of spec §2.6 compute, on SQLite and PostgreSQL, with either writer of allOrgSync.

The model below restates §2.6 in a few lines of Python; the code under test is the services
(the HTTP layer is covered by the kit tests). Codes come from a small alphabet so that
collisions, re-parenting, orphans and cycles happen often.
"""

import itertools

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koogallery.protocol.resultcodes import KooGalleryError
from orgsync import selectors, services
from tenants.models import SyncFlag, Tenant, TenantUser
from tests.support.org_kit import dangling_parents, misplaced_users, tree, user_links
from tests.support.org_model import CODES, PARENTS, Model

pytestmark = pytest.mark.django_db

WRITERS = ["portable", "postgresql"] if connection.vendor == "postgresql" else ["portable"]
_tenant_numbers = itertools.count()

names = st.sampled_from(["甲", "乙", "丙"])
upsert = st.tuples(
    st.just("upsert"),
    st.sampled_from(CODES),
    names,
    st.sampled_from([*PARENTS, None]),  # None: parentCode left out (keeps the parent)
    st.sampled_from([SyncFlag.ADD, SyncFlag.MODIFY]),
)
delete = st.tuples(st.just("delete"), st.sampled_from(CODES))
snapshot = st.tuples(
    st.just("full"),
    st.lists(st.tuples(st.sampled_from(CODES), names, st.sampled_from(PARENTS)), max_size=8),
)
# A snapshot derived from the current tree: what KooGallery sends after a few edits in the
# console (most rows unchanged, some renamed, moved, added or dropped).
resync = st.tuples(
    st.just("resync"),
    st.lists(st.tuples(st.sampled_from(CODES), names, st.sampled_from(PARENTS)), max_size=3),
    st.sets(st.sampled_from(CODES), max_size=2),
)
operations = st.lists(st.one_of(upsert, delete, snapshot, resync), min_size=1, max_size=10)




def apply(tenant_id: str, operation, writer: str) -> bool:
    kind = operation[0]
    try:
        if kind == "upsert":
            _, code, name, parent, flag = operation
            services.single_org_sync(
                tenant_id=tenant_id,
                is_test=False,
                org_code=code,
                flag=flag,
                org_name=name,
                parent_code=parent,
            )
        elif kind == "delete":
            services.single_org_sync(
                tenant_id=tenant_id, is_test=False, org_code=operation[1], flag=SyncFlag.DELETE
            )
        else:
            services.all_org_sync(
                tenant_id=tenant_id, is_test=False, departments=operation[1], writer=writer
            )
    except KooGalleryError as exc:
        assert exc.code == "000002"
        return False
    return True


def forest_shape(nodes) -> dict:
    return {n.org_code: forest_shape(n.children) for n in nodes}


def model_forest(model: Model) -> dict:
    links = model.tree()
    children: dict = {}
    for code, (_, _, parent) in links.items():
        children.setdefault(parent, []).append(code)

    def build(code):
        return {child: build(child) for child in sorted(children.get(code, []))}

    return build(None)


@pytest.mark.parametrize("writer", WRITERS)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=operations)
def test_any_sequence_of_syncs_leaves_the_tree_the_rules_describe(writer, operations):
    tenant_id = f"prop-{writer}-{next(_tenant_numbers)}"
    owner = Tenant.objects.create(tenant_id=tenant_id)
    # Users synced before any department (authSync first): linked when their code arrives.
    TenantUser.objects.bulk_create(
        TenantUser(tenant=owner, user_name=f"user-{c}", org_code=c) for c in CODES
    )
    model = Model()

    for operation in operations:
        if operation[0] == "resync":
            _, edits, dropped = operation
            current = [(c, n, p) for c, (n, p) in model.departments.items() if c not in dropped]
            operation = ("full", list(reversed(current)) + edits)
        kind = operation[0]
        expected = getattr(model, kind)(*operation[1:4] if kind == "upsert" else operation[1:])
        before = tree(tenant_id)

        accepted = apply(tenant_id, operation, writer)

        assert accepted == expected, operation
        if not accepted:
            assert tree(tenant_id) == before
        assert tree(tenant_id) == model.tree(), operation
        assert user_links(tenant_id) == model.users(), operation
        assert dangling_parents(tenant_id) == [], operation
        assert misplaced_users(tenant_id) == [], operation

    assert forest_shape(selectors.department_forest(tenant=owner)) == model_forest(model)
