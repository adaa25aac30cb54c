"""Kit endpoints singleOrgSync and allOrgSync, V2 and V1 (spec §4.1.4, §4.1.5, §4.3).

The pipeline in `koogallery.inbound.endpoint` verifies, journals and wraps each call in a
transaction;
these views only pick the serializer, call one service with the call's time (§2.3) and hand
back how many departments it skipped as stale, for the journal.
"""

from koogallery.inbound.endpoint import Call, KitEndpoint, Reply

from . import services
from .serializers import AllOrgSyncSerializer, AllOrgSyncV1Serializer, SingleOrgSyncSerializer


class SingleOrgSyncView(KitEndpoint):
    serializer_class = SingleOrgSyncSerializer

    def perform(self, data: dict, call: Call) -> Reply:
        result = services.single_org_sync(
            tenant_id=data["tenantId"],
            is_test=data["is_test"],
            org_code=data["orgCode"],
            flag=data["flag"],
            org_name=data.get("orgName", ""),
            parent_code=data.get("parentCode"),
            call_time=data["call_time"],
        )
        return Reply(stale=result.stale)


class AllOrgSyncView(KitEndpoint):
    serializer_class = AllOrgSyncSerializer
    v1_serializer_class = AllOrgSyncV1Serializer

    def perform(self, data: dict, call: Call) -> Reply:
        result = services.all_org_sync(
            tenant_id=data["tenantId"],
            is_test=data["is_test"],
            departments=data["departments"],
            call_time=data["call_time"],
        )
        return Reply(stale=result.stale)
