"""The staff org-tree page: a tenant's departments and users, linked from the tenant's admin page.

The page is a shell (summary, search box, legend); orgsync/static/orgsync/org_tree.js reads the
tree from the staff JSON API (orgsync/api.py) level by level, so a tenant of 100,000
departments costs the browser only what is expanded.

Addressed like the API: /staff/tenants/<tenantId>/org-tree, `?test=1` for the debug tenant.
"""

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.urls import reverse

from tenants import selectors as tenant_selectors

from . import staff_selectors
from .api import CHILD_PAGE, TenantQuery


@staff_member_required
def org_tree(request: HttpRequest, tenant_id: str) -> HttpResponse:
    query = TenantQuery(data=request.GET)
    if not query.is_valid():
        return HttpResponseBadRequest("test: use 1 for the debug tenant, 0 or nothing otherwise")
    is_test = query.validated_data["test"]
    # No stored id holds NUL, and PostgreSQL refuses it in a query (a 500, not a 404).
    tenant = (
        None
        if "\x00" in tenant_id
        else tenant_selectors.tenant(tenant_id=tenant_id, is_test=is_test)
    )
    if tenant is None:
        raise Http404(f"no {'debug' if is_test else 'production'} tenant {tenant_id!r}")
    context = {
        **admin.site.each_context(request),
        "title": f"Department tree of {tenant}",
        "is_nav_sidebar_enabled": False,  # the tree needs the width
        "tenant": tenant,
        "summary": staff_selectors.tenant_summary(tenant=tenant),
        "api_base": reverse("api-tenant", args=[tenant.tenant_id]),
        "page_size": CHILD_PAGE,
    }
    return render(request, "orgsync/org_tree.html", context)


def org_tree_url(tenant) -> str:
    """The page of `tenant` (for links from the admin)."""
    url = reverse("staff-org-tree", args=[tenant.tenant_id])
    return f"{url}?test=1" if tenant.is_test else url
