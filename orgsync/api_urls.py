"""Staff JSON API routes (orgsync/api.py), included by config/urls.py under /api/."""

from django.urls import path

from . import api

urlpatterns = [
    path("tenants/<str:tenant_id>", api.TenantSummaryView.as_view(), name="api-tenant"),
    path("tenants/<str:tenant_id>/org-tree", api.OrgTreeView.as_view(), name="api-org-tree"),
    path(
        "tenants/<str:tenant_id>/org-tree/search",
        api.OrgTreeSearchView.as_view(),
        name="api-org-tree-search",
    ),
    # orgCode may hold any character but "/" is the only one a path segment cannot carry
    # unencoded; <path:> accepts it (%2F arrives decoded), the "/users" suffix still anchors.
    path(
        "tenants/<str:tenant_id>/departments/<path:org_code>/users",
        api.DepartmentUsersView.as_view(),
        name="api-department-users",
    ),
    path(
        "tenants/<str:tenant_id>/departments/<path:org_code>/ancestors",
        api.AncestorsView.as_view(),
        name="api-department-ancestors",
    ),
    path(
        "tenants/<str:tenant_id>/unassigned-users",
        api.UnassignedUsersView.as_view(),
        name="api-unassigned-users",
    ),
]
