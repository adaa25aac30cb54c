"""Kit routes of this app; config/urls.py includes `kit_urlpatterns` (spec §2.1)."""

from koogallery.inbound.urls import kit_paths

from .views import AllOrgSyncView, SingleOrgSyncView

kit_urlpatterns = kit_paths("singleOrgSync", SingleOrgSyncView) + kit_paths(
    "allOrgSync", AllOrgSyncView
)
