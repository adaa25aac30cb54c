"""The journal admin looks calls up by exact ids (an index lookup on a table written per call)."""

import pytest

from tests.support.kgclient import envelope, fixture_json

pytestmark = pytest.mark.django_db


def test_the_journal_is_searched_by_an_exact_id(kg, admin_client):
    body = fixture_json("tenantSync__huawei_example")
    assert envelope(kg.kit("tenantSync", body))["resultCode"] == "000000"
    page = "/admin/koogallery/inboundcall/"

    found = admin_client.get(page, {"q": body["orderId"]})
    partial = admin_client.get(page, {"q": body["orderId"][:6]})

    assert found.status_code == partial.status_code == 200
    assert found.context["cl"].result_count == 1
    assert partial.context["cl"].result_count == 0
    assert "an exact tenantId" in found.content.decode()
