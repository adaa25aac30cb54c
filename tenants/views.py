"""Kit endpoints of the tenants app: tenantSync, applicationSync, authSync (spec §4.1.1–§4.1.3).

Verification, envelope, journal and the transaction are the pipeline's (`KitEndpoint`); each
view only picks its serializers and calls one service, passing the call's time (§2.3) and
handing back how many entities it skipped as stale, for the journal.
"""

from koogallery.inbound.endpoint import Call, KitEndpoint, Reply

from . import serializers, services
from .models import SyncFlag


class TenantSyncView(KitEndpoint):
    serializer_class = serializers.TenantSyncSerializer
    v1_serializer_class = serializers.TenantSyncV1Serializer

    def perform(self, data: dict, call: Call) -> Reply:
        result = services.tenant_sync(
            tenant_id=data["tenantId"],
            is_test=data["is_test"],
            instance_id=data["instanceId"],
            order_id=data["orderId"],
            tenant_code=data["tenantCode"],
            name=data["name"],
            domain_name=data["domainName"],
            flag=SyncFlag(data["flag"]),
            call_time=data["call_time"],
        )
        return Reply(stale=result.stale)


class ApplicationSyncView(KitEndpoint):
    serializer_class = serializers.ApplicationSyncSerializer
    v1_serializer_class = serializers.ApplicationSyncV1Serializer

    def perform(self, data: dict, call: Call) -> Reply:
        result = services.application_sync(
            tenant_id=data["tenantId"],
            is_test=data["is_test"],
            instance_id=data["instanceId"],
            app_id=data["appId"],
            client_id=data["clientId"],
            client_secret_ciphertext=data["clientSecret"],
            flag=SyncFlag(data["flag"]),
            call_time=data["call_time"],
        )
        return Reply(stale=result.stale)


class AuthSyncView(KitEndpoint):
    serializer_class = serializers.AuthSyncSerializer
    v1_serializer_class = serializers.AuthSyncV1Serializer

    def perform(self, data: dict, call: Call) -> Reply:
        result = services.auth_sync(
            tenant_id=data["tenantId"],
            is_test=data["is_test"],
            instance_id=data["instanceId"],
            app_id=data["appId"],
            users=data["userList"],
            current_sync_time=data["currentSyncTime"],
            flag=SyncFlag(data["flag"]),
            call_time=data["call_time"],
        )
        return Reply(stale=result.stale)
