from django.contrib import admin
from django.urls import include, path

from koogallery.urls import production_paths
from ops import views as ops_views

admin.site.site_header = "KooGallery merchant server"
admin.site.site_title = "KooGallery merchant"

urlpatterns = [
    path("admin/", admin.site.urls),
    # ops: liveness, readiness, Prometheus (docs/operations.md)
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("sso/", include("sso.urls")),
    *production_paths(),
]

# Kit endpoints: each domain app contributes its views (see tenants/urls.py, orgsync/urls.py).
try:
    from tenants.urls import kit_urlpatterns as tenant_kit
except ImportError:  # pragma: no cover - while the app is being built
    tenant_kit = []
try:
    from orgsync.urls import kit_urlpatterns as org_kit
except ImportError:  # pragma: no cover
    org_kit = []
urlpatterns += tenant_kit + org_kit
