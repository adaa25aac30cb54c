"""Every signing vector of spec §3.1–§3.4 (Huawei publishes none with keys; these are ours)."""

import json

from koogallery.protocol import signing

KIT_KEY = "TEST_KIT_ACCESS_KEY_0123456789"
NONCE = "50D83FDECAED6CCD8EF597F2A577950527928BA287D04E6036E92B2806FD17DA"
TS = "1680508066618"

TENANT_SYNC_EXAMPLE = (
    '{"instanceId": "huaiweitest123456","orderId": "CS1906666666ABCDE","tenantId": '
    '"68cbc86****************880d92f36422fa0e","tenantCode": "huawei","name": "huaiweitest",'
    '"domainName": "https://example.tenantaccount.com","flag": 1,"testFlag": 0,'
    '"timeStamp": "20220413093539534"}'
)


def test_canonical_json_vector_a():
    payload = signing.canonical_json(json.loads(TENANT_SYNC_EXAMPLE))
    assert payload == (
        b'{"domainName":"https://example.tenantaccount.com","flag":1,"instanceId":'
        b'"huaiweitest123456","name":"huaiweitest","orderId":"CS1906666666ABCDE","tenantCode":'
        b'"huawei","tenantId":"68cbc86****************880d92f36422fa0e","testFlag":0,'
        b'"timeStamp":"20220413093539534"}'
    )


def test_kit_vector_a():
    payload = signing.canonical_json(json.loads(TENANT_SYNC_EXAMPLE))
    assert signing.kit_sign(KIT_KEY, NONCE, TS, payload) == (
        "868b8f260089ef6eea8b444e73e462e887d190f651e28d79ab7d8c2a6ac20eb4"
    )


def test_kit_vector_b_non_ascii():
    body = (
        '{"instanceId":"i1","tenantId":"t1","orgCode":"10000","orgName":"开发部",'
        '"parentCode":"","flag":1,"testFlag":0,"timeStamp":"20220413093539534"}'
    )
    payload = signing.canonical_json(json.loads(body))
    assert payload.decode() == (
        '{"flag":1,"instanceId":"i1","orgCode":"10000","orgName":"开发部","parentCode":"",'
        '"tenantId":"t1","testFlag":0,"timeStamp":"20220413093539534"}'
    )
    assert signing.kit_sign(KIT_KEY, NONCE, TS, payload) == (
        "39fe8440d3d343dd69c0c14d535b9088a8bb6f69707652ede6ca57877179e7f0"
    )


def test_canonical_json_drops_top_level_nulls_only():
    payload = signing.canonical_json({"b": None, "a": {"z": None, "y": 1}})
    assert payload == b'{"a":{"z":null,"y":1}}'


def test_basic_vector():
    body = (
        b'{"activity":"newInstance","businessId":"87b94795-0603-4e24-8ae5-69420d60e3c8",'
        b'"orderId":"CS2211181819B4LVS","orderLineId":"CS2211181819B4LVS-000001","testFlag":"1"}'
    )
    key = "testAccessKey123"
    assert signing._hmac(key, body).hex() == (
        "9d7fe05c22e8bc1d70841bace6c549b523dcb77a8aa61dc0118708bf14269c0e"
    )
    assert signing.basic_sign(key, NONCE, TS, body) == (
        "cd8d59bb7fcf7574752b5eb0ed04b3acf4a759da53f24d30a79abe45c5d1ba25"
    )
    # Sent upper-case; compared case-insensitively.
    sent = "CD8D59BB7FCF7574752B5EB0ED04B3ACF4A759DA53F24D30A79ABE45C5D1BA25"
    assert signing.verify_v2(signing.basic_sign, [key], sent, NONCE, TS, [body]) == key


def test_v1_auth_token_vector():
    params = {"p1": "1", "p3": 3, "p2": "2", "timeStamp": "201706211855321"}
    assert signing.v1_joined(params) == "p1=1&p2=2&p3=3&timeStamp=201706211855321"
    assert signing.v1_auth_token("TEST_V1_KEY", params) == (
        "mbDvuEh7AvzTLC8XtVknvrOFLz56qWXzSCLcYvRMTMk="
    )


def test_v1_joined_skips_token_null_and_blank():
    params = {"a": "", "b": None, "c": " ", "authToken": "x", "d": 0, "timeStamp": "1"}
    assert signing.v1_joined(params) == "d=0&timeStamp=1"


def test_v1_token_quotes_are_stripped():
    params = {"p1": "1", "timeStamp": "201706211855321"}
    token = signing.v1_auth_token("TEST_V1_KEY", params)
    for sent in (f'"{token}"', f"\u201c{token}\u201d", f"  {token} ", f'"{token}\u201d'):
        assert signing.verify_v1(["TEST_V1_KEY"], sent, params) == "TEST_V1_KEY"
    assert signing.verify_v1(["OTHER"], token, params) is None


def test_body_sign_vector_and_header():
    body = b'{"resultCode":"000000","resultMsg":"Success"}'
    assert signing.body_signature("TEST_V1_KEY", body) == (
        "D5YSdWrnLeNEk6KjSIaOuMsqh4Fl0/y5/PA2VfFMkKc="
    )
    assert signing.body_sign_header("TEST_V1_KEY", body) == (
        'sign_type="HMAC-SHA256", signature= "D5YSdWrnLeNEk6KjSIaOuMsqh4Fl0/y5/PA2VfFMkKc="'
    )


def test_verify_v2_tries_every_key_and_both_forms():
    raw = b'{"b":1, "a":2}'
    parsed = json.loads(raw)
    forms = list(signing.payload_forms(raw, parsed))
    assert forms == [raw, b'{"a":2,"b":1}']
    for payload in forms:
        sig = signing.kit_sign("new", NONCE, TS, payload)
        lazy = signing.payload_forms(raw, parsed)
        assert signing.verify_v2(signing.kit_sign, ["old", "new"], sig, NONCE, TS, lazy) == "new"
    lazy = signing.payload_forms(raw, parsed)
    assert signing.verify_v2(signing.kit_sign, ["old"], "00" * 32, NONCE, TS, lazy) is None


def test_canonical_form_is_not_repeated_when_the_body_is_already_canonical():
    raw = b'{"a":2,"b":1}'
    assert list(signing.payload_forms(raw, {"a": 2, "b": 1})) == [raw]
