"""Sign-in on data that arrived through KooGallery's own calls, end to end: newInstance,
tenantSync, applicationSync (RSA-OAEP `clientSecret`, §3.6), allOrgSync and authSync, then the
login of §5.3; later updateInstanceStatus, authSync cancel and releaseInstance change what the
same user gets. Nothing is created through the ORM here."""

import pytest

from sso.models import Reason
from tests.support.kgclient import envelope, fixture_json
from tests.support.sso_support import round_trip
from tests.support.tenant_kit import (
    body_of,
    oaep_encrypt,
    rsa_keys,  # noqa: F401 (fixture)
    rsa_settings,  # noqa: F401 (fixture)
    send,
)

pytest_plugins = ["tests.support.sso_fixtures"]

pytestmark = pytest.mark.django_db

INSTANCE = "5b0f3c8e-2f7e-4c1e-9d55-3c2a1f0e9b11"  # businessId of newInstance__production
TENANT = "68cbc86abc2018ab880d92f36422fa0e"
APP = "KSIDJF1234456"
SECRET = "s3cr3t-Plain-Client-Secret-7f3a"


def basic(kg, name: str, **fields) -> None:
    body = fixture_json(name, **fields)
    body.pop("testFlag", None)  # production calls carry no testFlag (§2.5)
    assert envelope(kg.basic(body))["resultCode"] == "000000"


def kit(kg, name: str, body: dict) -> None:
    assert send(kg, "v2", name, body)["resultCode"] == "000000"


@pytest.fixture
def synced(kg, fake_koogallery, fake_oauth, rsa_settings, rsa_keys):  # noqa: F811
    """A purchase and its enterprise, exactly as KooGallery's calls leave them."""
    basic(kg, "newInstance__production")
    common = {"instanceId": INSTANCE, "tenantId": TENANT, "testFlag": 0}
    kit(
        kg,
        "tenantSync",
        body_of(
            "tenantSync__huawei_example",
            **common,
            tenantCode="acme",
            name="Acme Trading Ltd",
            domainName=fake_oauth.url,
        ),
    )
    kit(
        kg,
        "applicationSync",
        body_of(
            "applicationSync__huawei_shape_example",
            **common,
            appId=APP,
            clientId="bc20a7f3880d92f3",
            clientSecret=oaep_encrypt(rsa_keys[1], SECRET),
        ),
    )
    kit(kg, "allOrgSync", body_of("allOrgSync__tree", **common))
    user = {
        "userName": "zhangsan01",
        "name": "张三",
        "orgCode": "111",
        "role": "admin",
        "enable": "true",
    }
    kit(kg, "authSync", body_of("authSync__composed_example", **common, appId=APP, userList=[user]))
    fake_oauth.register_app(
        app_id=APP,
        client_id="bc20a7f3880d92f3",
        client_secret=SECRET,
        tenant_id=TENANT,
        redirect_url="http://testserver/sso/callback",
    )
    fake_oauth.add_user(tenant_id=TENANT, user_name="zhangsan01", name="张三")
    return fake_oauth


def login(client, fake):
    return round_trip(client, fake, "zhangsan01", tenant_id=TENANT, tenant="acme")


def test_a_user_synced_by_koogallery_signs_in_and_loses_access_as_koogallery_says(
    client, kg, synced
):
    assert login(client, synced)["Location"] == "/sso/"
    page = client.get("/sso/").content.decode()
    assert "总部 / 研发部 / 平台组" in page
    assert "Tenant administrator" in page
    assert synced.seen("/oauth2/token")[0].form["client_secret"] == SECRET

    # Expiry: KooGallery freezes the instance; the open session ends with the reason.
    basic(kg, "updateInstanceStatus__huawei", instanceId=INSTANCE)
    response = client.get("/sso/")
    assert response.status_code == 403
    assert "Subscription suspended" in response.content.decode()

    # Renewed: signing in works again.
    basic(kg, "updateInstanceStatus__unfreeze", instanceId=INSTANCE)
    assert login(client, synced)["Location"] == "/sso/"
    client.post("/sso/logout")

    # The enterprise's administrator cancels the authorisation (authSync flag 3).
    user = {
        "userName": "zhangsan01",
        "name": "张三",
        "orgCode": "111",
        "role": "admin",
        "enable": "true",
    }
    kit(
        kg,
        "authSync",
        body_of(
            "authSync__composed_example",
            instanceId=INSTANCE,
            tenantId=TENANT,
            appId=APP,
            userList=[user],
            flag=3,
            testFlag=0,
        ),
    )
    response = login(client, synced)
    assert response.status_code == 403
    assert Reason.AUTHORIZATION_REVOKED.value in response.content.decode()

    # The subscription ends.
    basic(
        kg,
        "releaseInstance__huawei",
        instanceId=INSTANCE,
        orderId="CS2405200930PRODX",
        orderLineId="CS2405200930PRODX-000001",
    )
    response = client.get("/sso/login", {"tenant": "acme"})
    assert response.status_code == 403
    assert "Subscription ended" in response.content.decode()
