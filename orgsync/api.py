"""Staff JSON API over a tenant's departments and users (the org-tree page reads it too).

Staff only: the REST_FRAMEWORK defaults (SessionAuthentication, IsAdminUser) apply to every
view here. Read-only: departments and users belong to KooGallery's kit calls (spec §2.6).

A tenant is addressed by its KooGallery tenantId plus `?test=1` for the debug tenant of the same
id (testFlag 1 rows live in their own tenant, spec §2.5); without it, the production tenant.
Output names follow the protocol (orgCode, userName, …); the schema is at /api/schema/.

Budgets (issue 14): every answer is bounded in nodes, bytes and time whatever the tree's shape;
the numbers live in staff_selectors.py and are stated in the schema (`BUDGETS`). A parameter
above its documented maximum (depth, limit) is refused with 400 naming the field and the
maximum; the budgets that follow from the data (nodes per answer, branch walk, path walk) are
applied silently and the answer says where it was cut (children null, totalUsersExact false,
path.elided / path.exact).
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants import selectors as tenant_selectors
from tenants.models import AuthorizationState, Role, Tenant

from . import staff_selectors
from .models import Department
from .staff_selectors import (
    AUTHORIZATIONS_PER_USER,
    CHILD_PAGE,
    MAX_ANCESTORS,
    MAX_CHILD_PAGE,
    MAX_DEPTH,
    MAX_NODES,
    MAX_SEARCH_LIMIT,
    PATH_HEAD,
    PATH_TAIL,
    PATH_WALK,
    SEARCH_LIMIT,
    TOTALS_WALK,
    USER_PAGE,
    CompactPath,
)

BUDGETS = (
    f"Budgets: a tree answer holds at most {MAX_NODES} departments, {MAX_DEPTH} levels below "
    f"its top, each children list a page of at most {MAX_CHILD_PAGE}; user totals of a branch "
    f"count at most {TOTALS_WALK} departments per answer (beyond: totalUsersExact false, a "
    f"lower bound). Search: at most {MAX_SEARCH_LIMIT} departments and {MAX_SEARCH_LIMIT} "
    f"users, each path compacted to its first {PATH_HEAD} and last {PATH_TAIL} steps and "
    f"walked up at most {PATH_WALK} levels; ancestors: at most {MAX_ANCESTORS} per request. "
    f"Users: at most {USER_PAGE} per page, {AUTHORIZATIONS_PER_USER} authorisations each. "
    "Whatever the tree's shape (a 100,000-deep chain, 100,000 children of one department) "
    "an answer stays under 2 MB, proven with max-length names in "
    "tests/orgsync/test_org_tree_budgets.py, and its queries are indexed ranges bounded by these "
    "numbers. depth or limit above its maximum: 400 naming the field; the node and walk "
    "budgets cut the answer silently and say where (children null, totalUsersExact, path)."
)


# --- query parameters --------------------------------------------------------------------------


class TenantQuery(serializers.Serializer):
    test = serializers.BooleanField(
        default=False,
        help_text="1: the debug tenant of this tenantId (testFlag 1 calls); default production",
    )


class TreeQuery(TenantQuery):
    root = serializers.CharField(
        max_length=64,
        required=False,
        help_text="orgCode of the department to start from; default: the top-level departments "
        "and orphans",
    )
    depth = serializers.IntegerField(
        min_value=0,
        max_value=MAX_DEPTH,
        default=1,
        help_text=f"levels of descendants loaded below each returned node (0: none; at most "
        f"{MAX_DEPTH}, and at most {MAX_NODES} nodes in all)",
    )
    offset = serializers.IntegerField(
        min_value=0,
        default=0,
        help_text="first entry of the paged list: the roots, or the root's children",
    )
    after = serializers.CharField(
        max_length=64,
        required=False,
        help_text="with root: the page of its children starts after this orgCode (the "
        "nextAfter of the previous page), an index range however far into the list; not with "
        "offset",
    )
    limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_CHILD_PAGE,
        default=CHILD_PAGE,
        help_text=f"entries per children list (and per page of the paged list), at most "
        f"{MAX_CHILD_PAGE}",
    )


    def validate(self, data):
        if "after" in data and ("root" not in data or data["offset"]):
            raise serializers.ValidationError({"after": "only with root, and not with offset"})
        return data


class SearchQuery(TenantQuery):
    q = serializers.CharField(
        max_length=128,
        help_text="part of a department's name or orgCode, or of a user's name or userName",
    )
    limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_SEARCH_LIMIT,
        default=SEARCH_LIMIT,
        help_text=f"matches per list (departments, users), at most {MAX_SEARCH_LIMIT}",
    )


class AncestorsQuery(TenantQuery):
    limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_ANCESTORS,
        default=50,
        help_text=f"ancestors to read, nearest first, at most {MAX_ANCESTORS}",
    )


def _query(serializer_class, request: Request) -> dict:
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


def _tenant(tenant_id: str, *, is_test: bool) -> Tenant:
    # No stored id holds NUL, and PostgreSQL refuses it in a query (a 500, not a 404).
    tenant = (
        None
        if "\x00" in tenant_id
        else tenant_selectors.tenant(tenant_id=tenant_id, is_test=is_test)
    )
    if tenant is None:
        kind = "debug" if is_test else "production"
        raise NotFound(f"tenantId: no {kind} tenant {tenant_id!r}")
    return tenant


def _department(tenant: Tenant, org_code: str, field: str = "orgCode") -> Department:
    department = (
        None
        if "\x00" in org_code
        else Department.objects.filter(tenant=tenant, org_code=org_code).first()
    )
    if department is None:
        raise NotFound(f"{field}: no department {org_code!r} in this tenant")
    return department


# --- output ------------------------------------------------------------------------------------


class TenantOut(serializers.Serializer):
    tenantId = serializers.CharField(source="tenant_id")
    isTest = serializers.BooleanField(source="is_test")
    name = serializers.CharField()
    tenantCode = serializers.CharField(source="tenant_code")
    removedAt = serializers.DateTimeField(source="removed_at", allow_null=True)
    orgSyncedAt = serializers.DateTimeField(
        source="org_synced_at", allow_null=True, help_text="last singleOrgSync/allOrgSync"
    )


class TenantSummaryOut(serializers.Serializer):
    tenant = TenantOut()
    departmentCount = serializers.IntegerField(source="departments")
    userCount = serializers.IntegerField(source="users")
    orphanCount = serializers.IntegerField(
        source="orphans", help_text="departments whose parentCode names no synced department"
    )
    unassignedUserCount = serializers.IntegerField(
        source="unassigned_users", help_text="users without a department"
    )


class DepartmentNodeOut(serializers.Serializer):
    orgCode = serializers.CharField(source="org_code")
    orgName = serializers.CharField(source="org_name")
    parentCode = serializers.CharField(source="parent_code", help_text="as received")
    orphan = serializers.BooleanField(
        source="is_orphan", help_text="parentCode set but no such department: shown at the top"
    )
    directUsers = serializers.IntegerField(source="direct_users")
    totalUsers = serializers.IntegerField(
        source="total_users",
        help_text="users of the department and all its descendants (a lower bound when "
        "totalUsersExact is false)",
    )
    totalUsersExact = serializers.BooleanField(
        source="total_exact",
        help_text=f"false: the branch has more departments than one answer counts "
        f"({TOTALS_WALK}); totalUsers counts those reached",
    )
    childCount = serializers.IntegerField(source="child_count")

    def to_representation(self, node) -> dict:
        # An answer holds up to MAX_NODES of these: built directly, as the fields above would
        # build them (tests/orgsync/test_org_tree_api.py compares), without DRF's per-field calls,
        # which took a third of a 501-node answer's time (issue 17).
        return node_out(node)


def node_out(node) -> dict:
    return {
        "orgCode": str(node.org_code),
        "orgName": str(node.org_name),
        "parentCode": str(node.parent_code),
        "orphan": bool(node.is_orphan),
        "directUsers": int(node.direct_users),
        "totalUsers": int(node.total_users),
        "totalUsersExact": bool(node.total_exact),
        "childCount": int(node.child_count),
        "children": None if node.children is None else [node_out(c) for c in node.children],
    }


# Recursive: a node's children are nodes. None = not loaded (below `depth` or past the node
# budget); a list shorter than childCount = the first page (load more with root=this orgCode).
DepartmentNodeOut._declared_fields["children"] = DepartmentNodeOut(
    many=True,
    allow_null=True,
    help_text="null: not loaded; else the first children (fewer than childCount: more pages)",
)


class OrgTreeOut(serializers.Serializer):
    tenant = TenantOut()
    root = serializers.CharField(allow_null=True, help_text="the requested root orgCode")
    depth = serializers.IntegerField()
    offset = serializers.IntegerField()
    limit = serializers.IntegerField()
    count = serializers.IntegerField(
        help_text="entries of the paged list: roots (no root given) or the root's children"
    )
    nextOffset = serializers.IntegerField(
        source="next_offset", allow_null=True, help_text="offset of the next page, if any"
    )
    nextAfter = serializers.CharField(
        source="next_after",
        allow_null=True,
        help_text="with root: the cursor (after=) of the next page of its children, if any",
    )
    nodes = DepartmentNodeOut(many=True, help_text="the roots (a page), or [the root]")
    truncated = serializers.BooleanField(
        help_text=f"the node budget ({MAX_NODES}) left some requested children unloaded "
        "(children null): read them with root=<orgCode>"
    )


class PathStepOut(serializers.Serializer):
    orgCode = serializers.CharField(source="org_code")
    orgName = serializers.CharField(source="org_name")


class PathOut(serializers.Serializer):
    head = PathStepOut(
        many=True,
        help_text=f"the first steps from the top ({PATH_HEAD}; the whole path when nothing "
        "is elided; empty when the top was not reached)",
    )
    elided = serializers.IntegerField(
        help_text="steps left out between head and tail (read them with the ancestors "
        "request of tail[0]); a lower bound when exact is false"
    )
    exact = serializers.BooleanField(
        help_text=f"false: the walk up ({PATH_WALK} levels) did not reach the top"
    )
    tail = PathStepOut(
        many=True,
        help_text=f"the last {PATH_TAIL} steps, down to the department; [] if none elided",
    )


class DepartmentMatchOut(serializers.Serializer):
    orgCode = serializers.CharField(source="org_code")
    orgName = serializers.CharField(source="org_name")
    parentCode = serializers.CharField(source="parent_code")
    orphan = serializers.BooleanField(source="is_orphan")
    path = PathOut(help_text="from the top down to this department, compacted")


class UserMatchOut(serializers.Serializer):
    userName = serializers.CharField(source="user_name")
    name = serializers.CharField()
    orgCode = serializers.CharField(source="org_code", help_text="as received")
    department = serializers.CharField(
        source="department.org_code", allow_null=True, help_text="linked department, if any"
    )
    path = PathOut(
        allow_null=True, help_text="the department's path, compacted; null when unassigned"
    )


class SearchOut(serializers.Serializer):
    q = serializers.CharField()
    departments = DepartmentMatchOut(many=True)
    departmentsTruncated = serializers.BooleanField(help_text="more departments match")
    users = UserMatchOut(many=True)
    usersTruncated = serializers.BooleanField(help_text="more users match")


class AncestorsOut(serializers.Serializer):
    orgCode = serializers.CharField(help_text="the department asked about")
    ancestors = PathStepOut(
        many=True, help_text="its nearest ancestors, from the farthest down to its parent"
    )
    more = serializers.BooleanField(help_text="it has more ancestors above these")


class AuthorizationOut(serializers.Serializer):
    appId = serializers.CharField(source="app_id")
    instanceId = serializers.CharField(source="instance_id")
    role = serializers.ChoiceField(choices=Role.choices)
    enabled = serializers.BooleanField()
    state = serializers.ChoiceField(choices=AuthorizationState.choices)
    canSignIn = serializers.SerializerMethodField(
        help_text="authorized, enabled and the tenant not removed"
    )

    def get_canSignIn(self, authorization) -> bool:
        tenant = self.context["tenant"]
        return (
            authorization.state == AuthorizationState.AUTHORIZED
            and authorization.enabled
            and tenant.removed_at is None
        )


class UserOut(serializers.Serializer):
    userName = serializers.CharField(source="user_name")
    name = serializers.CharField()
    orgCode = serializers.CharField(source="org_code", help_text="as received")
    position = serializers.CharField()
    employeeCode = serializers.CharField(source="employee_code")
    authorizations = AuthorizationOut(
        source="first_authorizations",
        many=True,
        help_text=f"one per application (authSync): role, enabled, state; the first "
        f"{AUTHORIZATIONS_PER_USER} by appId",
    )
    authorizationCount = serializers.IntegerField(
        source="authorization_count", help_text="all of the user's authorisations"
    )


class ErrorOut(serializers.Serializer):
    detail = serializers.CharField()


ERRORS = {403: ErrorOut, 404: ErrorOut}
TAGS = ["staff: departments and users"]
TENANT_ID = OpenApiParameter(
    "tenant_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="KooGallery tenantId"
)
ORG_CODE = OpenApiParameter(
    "org_code", OpenApiTypes.STR, OpenApiParameter.PATH, description="department orgCode"
)


# --- views -------------------------------------------------------------------------------------


class TenantSummaryView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="A tenant's department and user counts and last department sync",
        parameters=[TENANT_ID, TenantQuery],
        responses={200: TenantSummaryOut, 400: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, tenant_id: str) -> Response:
        query = _query(TenantQuery, request)
        tenant = _tenant(tenant_id, is_test=query["test"])
        return Response(TenantSummaryOut(staff_selectors.tenant_summary(tenant=tenant)).data)


class OrgTreeView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Department tree: top levels, or a branch (root, depth), with user counts",
        description=BUDGETS,
        parameters=[TENANT_ID, TreeQuery],
        responses={200: OrgTreeOut, 400: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, tenant_id: str) -> Response:
        query = _query(TreeQuery, request)
        tenant = _tenant(tenant_id, is_test=query["test"])
        root = _department(tenant, query["root"], field="root") if "root" in query else None
        page = staff_selectors.department_tree(
            tenant=tenant,
            root=root,
            depth=query["depth"],
            offset=query["offset"],
            after=query.get("after"),
            limit=query["limit"],
        )
        answer = {
            "tenant": tenant,
            "root": root.org_code if root else None,
            "depth": query["depth"],
            "offset": query["offset"],
            "limit": query["limit"],
            "count": page.count,
            "next_offset": page.next_offset,
            "next_after": page.next_after,
            "nodes": page.nodes,
            "truncated": page.truncated,
        }
        return Response(OrgTreeOut(answer).data)


class OrgTreeSearchView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Departments (name, orgCode) and users (name, userName) matching q, with paths",
        description=BUDGETS,
        parameters=[TENANT_ID, SearchQuery],
        responses={200: SearchOut, 400: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, tenant_id: str) -> Response:
        query = _query(SearchQuery, request)
        tenant = _tenant(tenant_id, is_test=query["test"])
        text, limit = query["q"], query["limit"]
        departments = staff_selectors.search_departments(tenant=tenant, text=text, limit=limit)
        users = staff_selectors.search_users(tenant=tenant, text=text, limit=limit)
        ids = {d.pk for d in departments[:limit]} | {
            u.department_id for u in users[:limit] if u.department_id
        }
        paths = staff_selectors.ancestor_paths(tenant=tenant, department_ids=sorted(ids))
        answer = {
            "q": text,
            "departments": [_with_path(d, paths[d.pk]) for d in departments[:limit]],
            "departmentsTruncated": len(departments) > limit,
            "users": [_with_path(u, paths.get(u.department_id)) for u in users[:limit]],
            "usersTruncated": len(users) > limit,
        }
        return Response(SearchOut(answer).data)


def _with_path(row, path: CompactPath | None):
    row.path = path
    return row


class AncestorsView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="A department's nearest ancestors (to fill an elided search path)",
        description=BUDGETS,
        parameters=[TENANT_ID, ORG_CODE, AncestorsQuery],
        responses={200: AncestorsOut, 400: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, tenant_id: str, org_code: str) -> Response:
        query = _query(AncestorsQuery, request)
        tenant = _tenant(tenant_id, is_test=query["test"])
        department = _department(tenant, org_code)
        steps, more = staff_selectors.ancestors(
            tenant=tenant, department=department, limit=query["limit"]
        )
        answer = {"orgCode": department.org_code, "ancestors": steps, "more": more}
        return Response(AncestorsOut(answer).data)


class UserPage(LimitOffsetPagination):
    default_limit = USER_PAGE
    max_limit = USER_PAGE


class _TenantUsersView(generics.ListAPIView):
    serializer_class = UserOut
    pagination_class = UserPage

    def tenant(self) -> Tenant:
        if not hasattr(self, "_tenant"):
            query = _query(TenantQuery, self.request)
            self._tenant = _tenant(self.kwargs["tenant_id"], is_test=query["test"])
        return self._tenant

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "tenant": self.tenant()}


@extend_schema(
    tags=TAGS,
    summary="Users assigned to a department, with role, enabled and state per application",
    parameters=[TENANT_ID, ORG_CODE, TenantQuery],
    responses={200: UserOut, 400: OpenApiTypes.OBJECT, **ERRORS},
)
class DepartmentUsersView(_TenantUsersView):
    def get_queryset(self):
        tenant = self.tenant()
        department = _department(tenant, self.kwargs["org_code"])
        return staff_selectors.department_users(tenant=tenant, department=department)


@extend_schema(
    tags=TAGS,
    summary="Users without a department (orgCode not synced, deleted, or empty)",
    parameters=[TENANT_ID, TenantQuery],
    responses={200: UserOut, 400: OpenApiTypes.OBJECT, **ERRORS},
)
class UnassignedUsersView(_TenantUsersView):
    def get_queryset(self):
        return staff_selectors.unassigned_users(tenant=self.tenant())
