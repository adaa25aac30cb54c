from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from koogallery.inbound.urls import production_paths
from metering import views as metering_views
from ops import views as ops_views
from orgsync import staff_views as org_staff_views
from orgsync.urls import kit_urlpatterns as org_kit
from tenants.urls import kit_urlpatterns as tenant_kit

admin.site.site_header = "KooGallery merchant server"
admin.site.site_title = "KooGallery merchant"

urlpatterns = [
    path("admin/", admin.site.urls),
    # ops: liveness, readiness, Prometheus (docs/operations.md)
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("sso/", include("sso.urls")),
    # --- metering: our product reports usage (issue 8) ---
    path("api/usage", metering_views.UsageView.as_view(), name="api-usage"),
    # --- orgsync staff page and API (staff only; issue 5) ---
    path("api/", include("orgsync.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/schema/swagger-ui/",
        SpectacularSwaggerView.as_view(url_name="schema"),
        name="schema-swagger-ui",
    ),
    path("api/schema/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="schema-redoc"),
    path(
        "staff/tenants/<str:tenant_id>/org-tree",
        org_staff_views.org_tree,
        name="staff-org-tree",
    ),
    # --- end orgsync ---
    *production_paths(),
]

# Kit endpoints: each domain app contributes its views (see tenants/urls.py, orgsync/urls.py).
urlpatterns += tenant_kit + org_kit
