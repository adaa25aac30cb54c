"""Kit routes of the tenants app (V2 and V1 of each, spec §2.1); included by config/urls.py."""

from koogallery.inbound.urls import kit_paths

from .views import ApplicationSyncView, AuthSyncView, TenantSyncView

kit_urlpatterns = (
    kit_paths("tenantSync", TenantSyncView)
    + kit_paths("applicationSync", ApplicationSyncView)
    + kit_paths("authSync", AuthSyncView)
)
