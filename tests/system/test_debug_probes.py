"""KooGallery's debug cases and probes (spec §1.3, §2.5, §2.7, §2.8, §4.5).

The console runs a product's saved debug cases (调试用例) in their order on one debug instance —
创建实例 newInstance, 更新实例 refreshInstance, 更新实例状态 updateInstanceStatus, 释放实例
releaseInstance, 异步申请License getLicenseAsync — then replays them every morning and
afternoon, forever; five failing days in a row freeze and hide the product. A replay repeats the
saved bodies (same orderId, businessId, eventId…) with a fresh nonce and timestamp. Every answer
must stay success, while production instances keep every check of §2.8.
"""

import pytest

from instances.models import Instance, InstanceOrder, InstanceState
from koogallery.inbound.journal import InboundCall
from licensing import tokens
from licensing.models import License, LicenseCode, LicenseCodeStatus, LicenseRequest, RequestState
from tests.support import licensing_kit as support
from tests.support.kgclient import fixture_json, reason
from tests.support.licensing_kit import PUBLIC_KEY

license_settings = support.license_settings  # the signing key; fast retries

pytestmark = pytest.mark.django_db

DEBUG_INSTANCE = "10e758d0-31ad-4c4b-8f1b-81d03469a10e"  # the instanceId Huawei's examples use
ORDER_ID = "CS2211181819B4LVS"
EVENT_ID = "8****e5694*****c8"

# The console's saved cases of a period product, in the order it runs them. The getLicenseAsync
# case is Huawei's own example (no testFlag) naming the debug instance.
PERIOD_CASES = [
    ("newInstance__huawei", {"businessId": DEBUG_INSTANCE}),
    ("refreshInstance__huawei", {}),
    ("updateInstanceStatus__huawei", {}),
    ("releaseInstance__huawei", {}),
    ("getLicenseAsync__console_case", {}),
]
FIRST_RUN = ["000000", "000000", "000000", "000000", "000004"]
REPLAY = ["000000"] * 5  # the licence was delivered after the first run

LICENSE_CODE_CASES = [
    ("refreshLicenseCode__huawei", {}),
    ("updateLicenseCodeStatus__huawei", {}),
    # Huawei's release example masks its code with one more star: a saved case names the code.
    ("releaseLicenseCode__huawei", {"license": "******"}),
]


def run_cases(call, cases) -> list[str]:
    return [call(name, **overrides)["resultCode"] for name, overrides in cases]


@pytest.fixture
def debug_order(fake_koogallery):
    """Query Order knows the debug order (a period order of one licence), as KooGallery does."""
    fake_koogallery.register_order(ORDER_ID)


@pytest.mark.parametrize("license_test_flag", [None, "1"], ids=["no-testFlag", "testFlag-1"])
def test_period_cases_pass_once_and_on_every_replay(
    call, fake_koogallery, debug_order, license_test_flag
):
    cases = [*PERIOD_CASES[:-1], (PERIOD_CASES[-1][0], {"testFlag": license_test_flag})]

    answers = [run_cases(call, cases) for _ in range(3)]  # the run, then two replays

    assert answers == [FIRST_RUN, REPLAY, REPLAY]
    instance = Instance.objects.get()
    assert (instance.instance_id, instance.is_test) == (DEBUG_INSTANCE, True)
    assert instance.state == InstanceState.RELEASED
    assert InstanceOrder.objects.get().is_test  # the refresh, recorded once
    # One licence, issued and uploaded once, marked debug.
    request = LicenseRequest.objects.get()
    assert (request.is_test, request.state) == (True, RequestState.DELIVERED)
    assert request.instance == instance
    license = License.objects.get()
    uploads = [u for u in fake_koogallery.upload_history if u.event_id == EVENT_ID]
    assert [u.token for u in uploads] == [license.token]
    payload = tokens.verify(uploads[0].token, PUBLIC_KEY)
    assert (payload["iid"], payload["eid"], payload["test"]) == (DEBUG_INSTANCE, EVENT_ID, True)
    assert InboundCall.objects.count() == 15


def test_probes_on_a_frozen_or_expired_debug_instance_get_their_licence(call, debug_order):
    """Never refused for the debug instance's state or validity period (§2.7): frozen, with an
    expiry (2022, from Huawei's refresh example) before the licence's window (2023–2024)."""
    run_cases(call, PERIOD_CASES[:3])
    assert Instance.objects.get().state == InstanceState.FROZEN

    assert call("getLicenseAsync__console_case")["resultCode"] == "000004"
    assert call("getLicenseAsync__console_case")["resultCode"] == "000000"


def production(cases):
    """The same cases as real calls on a production order: no testFlag, other ids."""
    out = []
    for name, overrides in cases:
        body = fixture_json(name, **overrides)
        changed = {"testFlag": None}
        if "instanceId" in body or name.startswith("newInstance"):
            changed["instanceId" if "instanceId" in body else "businessId"] = "prod-instance"
        if "orderId" in body:
            changed["orderId"] = "CSPRODUCTION01"
            changed["orderLineId"] = "CSPRODUCTION01-000001"
        out.append((name, {**overrides, **changed}))
    return out


def test_production_instances_are_as_strict_as_before(call, fake_koogallery):
    fake_koogallery.register_order("CSPRODUCTION01")
    cases = production(PERIOD_CASES)

    answers = [run_cases(call, cases) for _ in range(3)]

    # The licence is refused after release (000901), on every replay too.
    assert answers == [["000000"] * 4 + ["000901"]] * 3
    name, overrides = cases[-1]
    body = call(name, **overrides)
    assert reason(body) == "instanceId: instance prod-instance is released"
    assert not LicenseRequest.objects.exists() and not fake_koogallery.upload_history
    assert Instance.objects.get().is_test is False
    # An unknown instance is 000003.
    assert call("getLicenseAsync__console_case", instanceId="no-such")["resultCode"] == "000003"


@pytest.mark.parametrize(
    "case",
    ["getLicenseAsync__console_case", *(name for name, _ in PERIOD_CASES[1:4])],
)
def test_a_debug_call_naming_a_production_instance_is_000003(call, fake_koogallery, case):
    """§2.5: a debug call never touches a production instance; it answers as before."""
    fake_koogallery.register_order("CSPRODUCTION01")
    name, overrides = production(PERIOD_CASES)[0]
    call(name, **overrides)
    before = Instance.objects.values_list("state", "expire_at").get()

    assert call(case, instanceId="prod-instance", testFlag="1")["resultCode"] == "000003"
    assert Instance.objects.values_list("state", "expire_at").get() == before
    assert not LicenseRequest.objects.exists() and not InstanceOrder.objects.exists()


def test_a_production_licence_still_needs_a_valid_instance(call, fake_koogallery):
    """The debug exemption is the instance's, not the call's: a frozen production instance
    refuses a licence even when the call says testFlag 0."""
    fake_koogallery.register_order("CSPRODUCTION01")
    cases = production(PERIOD_CASES)
    run_cases(call, cases[:3])  # created, refreshed, frozen

    body = call(cases[-1][0], **{**cases[-1][1], "testFlag": "0"})
    assert body["resultCode"] == "000901"
    assert reason(body) == "instanceId: instance prod-instance is frozen"


@pytest.mark.parametrize("later_flag", ["1", None], ids=["testFlag-1", "no-testFlag"])
def test_licence_code_cases_pass_once_and_on_every_replay(call, later_flag):
    """A licence-code product's saved cases (§4.5) on one debug code; the later cases may carry
    no testFlag and are served on the debug code all the same."""
    first, *later = LICENSE_CODE_CASES
    cases = [first, *((name, {**saved, "testFlag": later_flag}) for name, saved in later)]

    answers = [run_cases(call, cases) for _ in range(3)]

    assert answers == [["000000"] * 3] * 3
    code = LicenseCode.objects.get()
    assert (code.is_test, code.status, code.frozen) == (True, LicenseCodeStatus.RELEASED, True)
    assert code.renewals.count() == 1

