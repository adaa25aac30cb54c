"""Kit endpoints singleOrgSync and allOrgSync, V2 and V1 (spec §4.1.4, §4.1.5, §4.3).

The pipeline in `koogallery.inbound` verifies, journals and wraps each call in a transaction;
these views only pick the serializer and call one service.
"""

from koogallery.inbound import Call, KitEndpoint

from . import services
from .serializers import AllOrgSyncSerializer, AllOrgSyncV1Serializer, SingleOrgSyncSerializer


class SingleOrgSyncView(KitEndpoint):
    serializer_class = SingleOrgSyncSerializer

    def perform(self, data: dict, call: Call) -> None:
        services.single_org_sync(
            tenant_id=data["tenantId"],
            is_test=data["is_test"],
            org_code=data["orgCode"],
            flag=data["flag"],
            org_name=data.get("orgName", ""),
            parent_code=data.get("parentCode"),
        )


class AllOrgSyncView(KitEndpoint):
    serializer_class = AllOrgSyncSerializer
    v1_serializer_class = AllOrgSyncV1Serializer

    def perform(self, data: dict, call: Call) -> None:
        services.all_org_sync(
            tenant_id=data["tenantId"], is_test=data["is_test"], departments=data["departments"]
        )
