"""Plays KooGallery against a deployment: builds a call, signs it as KooGallery does, sends it,
checks the answer (envelope, result code, `Body-Sign`) — `manage.py koogallery_call`.

A merchant runs it before KooGallery's own debugging (调试) to see that the address, the keys and
every interface answer as the spec says. Signing uses the same functions the server verifies
with (`koogallery.protocol.signing`), which the spec's vectors pin (§3.1–§3.4).

- Kit V2 (§3.1): `POST <url>/produceAPI/v2/<name>`, headers `x-sign` (upper-case hex, as Huawei
  sends it), `x-timestamp` (Unix ms), `x-nonce`.
- Basic V2 (§3.2): `POST <url>?signature=…&timestamp=…&nonce=…`.
- Kit V1 (§3.3, §4.3): `POST <url>/produceAPI/<name>`, header `authToken`.
- Basic V1 (§3.3, §4.4): `GET <url>?activity=…&timeStamp=…&authToken=…`.

`<url>` is the registered production address, e.g. `https://merchant.example.com/koogallery`.
"""

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from koogallery.inbound.urls import KIT_INTERFACES
from koogallery.protocol import signing
from koogallery.protocol.crypto import load_rsa_private_key

ACCEPTED = ("000000", "000004")
JSON_CONTENT_TYPE = "application/json;charset=utf8"  # as KooGallery sends it (§1.3)
MOCK_ORDER_ID = "MOCKPERIODYEARNEW"  # Query Order's mock period order (§5.1)
DEBUG_FINGERPRINT = "04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.||BFEBFBFF00090672"  # §4.2.8
# Shown instead of secret values when a request is printed.
MASK = "***"
SECRET_FIELDS = frozenset({"clientsecret", "password", "authtoken", "signature", "x-sign"})
CHINA = timezone(timedelta(hours=8))


class SimulatorError(Exception):
    """The call could not be built or sent (bad input, missing key, unreachable host)."""


# --- time formats ------------------------------------------------------------------------------
def kit_time_stamp(now: datetime | None = None) -> str:
    """Kit `timeStamp`: UTC+8 `yyyyMMddHHmmssSSS` (§4.1)."""
    now = (now or datetime.now(UTC)).astimezone(CHINA)
    return now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"


def v1_time_stamp(now: datetime | None = None) -> str:
    """V1 basic `timeStamp`: UTC `yyyyMMddHHmmssSSS` (§4.4)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"


def unix_ms() -> str:
    return str(int(time.time() * 1000))


def utc_text(moment: datetime) -> str:
    """getLicenseAsync times: UTC `yyyy-MM-dd HH:mm:ss` (§2.8)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def compact_utc(moment: datetime) -> str:
    """`yyyyMMddHHmmss`, UTC (refreshInstance `expireTime`, §4.2.3)."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def short_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


# --- what is called ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One interface (kit) or activity (basic), V2 or V1."""

    name: str
    v1: bool = False

    @property
    def is_kit(self) -> bool:
        return self.name in KIT_INTERFACES

    @property
    def family_label(self) -> str:
        return f"{'kit' if self.is_kit else 'basic'} {'V1' if self.v1 else 'V2'}"


@dataclass
class Keys:
    """Access keys as the service has them (§2.2): comma lists, any may sign."""

    kit: list[str]
    basic: list[str]

    @classmethod
    def from_settings(cls) -> "Keys":
        from django.conf import settings

        return cls(list(settings.KOOGALLERY_KIT_KEY), list(settings.KOOGALLERY_BASIC_KEY))

    def family(self, target: Target) -> list[str]:
        return self.kit if target.is_kit else self.basic

    def signing_key(self, target: Target, index: int = 0) -> str:
        keys = self.family(target)
        variable = "KOOGALLERY_KIT_KEY" if target.is_kit else "KOOGALLERY_BASIC_KEY"
        if not keys:
            raise SimulatorError(f"{variable} is empty: set the same keys as the service")
        if not 0 <= index < len(keys):
            raise SimulatorError(f"{variable} has {len(keys)} key(s); no key #{index + 1}")
        return keys[index]


# --- bodies ------------------------------------------------------------------------------------
def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`field=value` (a string) and `field:=json` (any JSON value: numbers, lists, objects)."""
    fields: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SimulatorError(f"{item!r}: expected field=value or field:=json")
        if name.endswith(":"):
            name = name[:-1]
            try:
                fields[name] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise SimulatorError(f"{name}:= is not JSON ({exc.msg})") from None
        else:
            fields[name] = value
        if not name:
            raise SimulatorError(f"{item!r}: the field name is empty")
    return fields


@dataclass
class Journey:
    """Identifiers shared by the calls of one buyer journey (and defaults of single calls)."""

    order_id: str = MOCK_ORDER_ID
    order_line_id: str = ""
    instance_id: str = ""
    tenant_id: str = field(default_factory=lambda: short_id("sim-tenant-"))
    tenant_code: str = field(default_factory=lambda: short_id("simtenant"))
    app_id: str = field(default_factory=lambda: short_id("sim-app-"))
    client_id: str = field(default_factory=lambda: short_id("sim-client-"))
    client_secret: str = "test"  # the debug plaintext of §3.6
    event_id: str = field(default_factory=lambda: short_id("sim-event-"))
    root_org: str = field(default_factory=lambda: short_id("sim-org-"))
    child_org: str = field(default_factory=lambda: short_id("sim-org-"))
    extra_org: str = field(default_factory=lambda: short_id("sim-org-"))
    user_name: str = field(default_factory=lambda: short_id("sim.user."))

    def __post_init__(self) -> None:
        if not self.order_line_id:
            # A fresh line per journey, so a second run against the same database is a new
            # purchase rather than the replay of a released one (natural key, §2.7).
            self.order_line_id = f"{self.order_id}-{uuid.uuid4().hex[:6].upper()}"


def default_body(target: Target, j: Journey, **context: Any) -> dict[str, Any]:
    """A complete debug-data (testFlag 1) body for `target`, ids taken from the journey."""
    now = datetime.now(UTC)
    ts = kit_time_stamp(now)
    name = target.name
    if target.is_kit:
        common = {"instanceId": j.instance_id, "tenantId": j.tenant_id, "testFlag": 1}
        if name == "tenantSync":
            body = {
                **common,
                "orderId": j.order_id,
                "tenantCode": j.tenant_code,
                "name": "Simulated buyer",
                "domainName": "https://example.tenantaccount.com",
                "flag": 1,
            }
        elif name == "applicationSync":
            body = {
                **common,
                "appId": j.app_id,
                "clientId": j.client_id,
                "clientSecret": j.client_secret,
                "flag": 1,
            }
        elif name == "allOrgSync":
            orgs = [
                {"orgCode": j.root_org, "orgName": "Simulated HQ", "parentCode": ""},
                {"orgCode": j.child_org, "orgName": "Simulated R&D", "parentCode": j.root_org},
            ]
            if target.v1:  # V1: `orgInfo`, a string, items named `name` (§4.3)
                v1_orgs = [
                    {"orgCode": o["orgCode"], "name": o["orgName"], "parentCode": o["parentCode"]}
                    for o in orgs
                ]
                body = {**common, "orgInfo": json.dumps(v1_orgs, ensure_ascii=False)}
            else:
                body = {**common, "orgInfoList": orgs}
        elif name == "authSync":
            users = [
                {
                    "userName": j.user_name,
                    "name": "Simulated admin",
                    "orgCode": j.child_org,
                    "role": "admin",
                    "enable": "true",
                }
            ]
            body = {
                **common,
                "appId": j.app_id,
                "userList": json.dumps(users, ensure_ascii=False) if target.v1 else users,
                "currentSyncTime": ts,
                "flag": 1,
            }
        else:  # singleOrgSync
            body = {
                **common,
                "orgCode": j.extra_org,
                "orgName": "Simulated QA",
                "parentCode": j.root_org,
                "flag": 1,
            }
        body["timeStamp"] = ts
        return body

    if target.v1:
        return _default_v1_basic(name, j, now)
    body: dict[str, Any] = {"activity": name}
    order = {"orderId": j.order_id, "orderLineId": j.order_line_id}
    if name == "newInstance":
        body |= {**order, "businessId": str(uuid.uuid4())}
    elif name == "queryInstance":
        body |= {"instanceId": j.instance_id}
    elif name == "refreshInstance":
        body |= {
            "instanceId": j.instance_id,
            **order,
            "scene": "RENEWAL",
            "expireTime": compact_utc(now + timedelta(days=2 * 365)),
        }
    elif name == "updateInstanceStatus":
        body |= {"instanceId": j.instance_id, "status": context.get("status", "FREEZE")}
    elif name in ("releaseInstance", "upgradeInstance"):
        body |= {"instanceId": j.instance_id, **order}
    elif name == "changeInstanceCheck":
        body |= {"instanceId": j.instance_id, "productInfo": {"productId": "OFFI-SIMULATED"}}
    elif name == "getLicenseAsync":
        body |= {
            "instanceId": j.instance_id,
            "eventId": j.event_id,
            "effectiveTime": utc_text(now),
            "expireTime": utc_text(now + timedelta(days=365)),
            "deviceFingerprint": DEBUG_FINGERPRINT,
        }
    elif name == "orderNotify":
        body |= order
    body["testFlag"] = "1"
    return body


def _default_v1_basic(name: str, j: Journey, now: datetime) -> dict[str, Any]:
    body: dict[str, Any] = {"activity": name}
    if name == "newInstance":
        body |= {
            "customerId": short_id("sim-customer-"),
            "customerName": "simulated",
            "businessId": str(uuid.uuid4()),
            # V1 newInstance is keyed by orderId alone (§4.4): a fresh one per journey.
            "orderId": j.order_line_id,
            "productId": "OFFI-SIMULATED",
            "chargingMode": "1",
            "expireTime": compact_utc(now + timedelta(days=365)),
        }
    elif name == "refreshInstance":
        body |= {
            "instanceId": j.instance_id,
            "orderId": short_id("sim-renewal-"),
            "expireTime": compact_utc(now + timedelta(days=2 * 365)),
        }
    elif name in ("expireInstance", "releaseInstance"):
        body |= {"instanceId": j.instance_id, "orderId": j.order_id}
    elif name == "upgrade":
        body |= {
            "instanceId": j.instance_id,
            "orderId": short_id("sim-upgrade-"),
            "skuCode": "sim-sku",
            "productId": "OFFI-SIMULATED",
        }
    elif name == "instanceStatus":
        body |= {"instanceId": j.instance_id, "instanceStatus": "FREEZE"}
    elif name == "queryInstance":
        body |= {"instanceId": j.instance_id}
    body["testFlag"] = "1"
    return body


# --- clientSecret (§3.6) -----------------------------------------------------------------------
def load_public_key(value: str) -> rsa.RSAPublicKey:
    """`--public-key`: PEM text, a PEM file, or the one-line base64 body the seller console
    takes (§3.6)."""
    text = value.strip()
    if not text.startswith("-----BEGIN") and not text.startswith("MII") and Path(text).exists():
        text = Path(text).read_text(encoding="ascii").strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.replace("\\n", "\n").encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode("".join(text.split())))
    except (ValueError, TypeError) as exc:
        raise SimulatorError(f"--public-key is not an RSA public key ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SimulatorError("--public-key is not an RSA key")
    return key


def public_key_from_settings() -> rsa.RSAPublicKey:
    from django.conf import settings

    if not settings.KOOGALLERY_RSA_PRIVATE_KEY:
        raise SimulatorError(
            "applicationSync needs an RSA public key to encrypt clientSecret: set "
            "KOOGALLERY_RSA_PRIVATE_KEY (as the service has it) or pass --public-key"
        )
    try:
        return load_rsa_private_key(settings.KOOGALLERY_RSA_PRIVATE_KEY).public_key()
    except ValueError as exc:
        raise SimulatorError(f"KOOGALLERY_RSA_PRIVATE_KEY: {exc}") from None


def encrypt_client_secret(plaintext: str, public_key: rsa.RSAPublicKey) -> str:
    """What KooGallery sends: base64 RSA-OAEP(SHA-256, MGF1-SHA-256) of the secret (§3.6)."""
    oaep = padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
    )
    return base64.b64encode(public_key.encrypt(plaintext.encode("utf-8"), oaep)).decode("ascii")


# --- one exchange ------------------------------------------------------------------------------
@dataclass
class Prepared:
    target: Target
    method: str
    url: str
    headers: dict[str, str]
    data: bytes
    body: dict[str, Any]  # as sent (clientSecret encrypted)
    shown_body: dict[str, Any]  # for printing (secrets masked)
    shown_url: str
    shown_headers: dict[str, str]


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: MASK if str(k).lower() in SECRET_FIELDS and v not in (None, "") else _mask(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def body_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def prepare(
    target: Target,
    body: dict[str, Any],
    *,
    base_url: str,
    keys: Keys,
    key_index: int = 0,
    raw: bytes | None = None,
    sign_form: str = "canonical",
) -> Prepared:
    """Sign `body` for `target` as KooGallery does. `raw` sends a fixture byte for byte."""
    base = base_url.rstrip("/")
    key = keys.signing_key(target, key_index)
    shown_body = _mask(body)
    if target.v1 and not target.is_kit:
        params = {k: _v1_text(v) for k, v in body.items() if v is not None}
        params.setdefault("timeStamp", v1_time_stamp())
        token = signing.v1_auth_token(key, params)
        query = {**params, "authToken": token}
        shown = {**_mask(params), "authToken": MASK}
        return Prepared(
            target,
            "GET",
            f"{base}?{urlencode(query)}",
            {},
            b"",
            params,
            shown,
            f"{base}?{urlencode(shown)}",
            {},
        )

    data = raw if raw is not None else body_bytes(body)
    # The signed payload: the canonical JSON (§2.3) or the exact bytes sent; the service
    # accepts either, so both forms are worth checking.
    payload = signing.canonical_json(body) if sign_form == "canonical" else data
    headers = {"Content-Type": JSON_CONTENT_TYPE}
    if target.is_kit and target.v1:
        url = f"{base}/produceAPI/{target.name}"
        headers["authToken"] = signing.v1_auth_token(key, body)
        shown_headers = {**headers, "authToken": MASK}
        shown_url = url
    elif target.is_kit:
        url = f"{base}/produceAPI/v2/{target.name}"
        nonce, timestamp = uuid.uuid4().hex.upper(), unix_ms()
        sign = signing.kit_sign(key, nonce, timestamp, payload).upper()  # Huawei: upper-case
        headers |= {"x-sign": sign, "x-timestamp": timestamp, "x-nonce": nonce}
        shown_headers = {**headers, "x-sign": MASK}
        shown_url = url
    else:
        nonce, timestamp = uuid.uuid4().hex.upper(), unix_ms()
        sign = signing.basic_sign(key, nonce, timestamp, payload).upper()
        url = f"{base}?{urlencode({'signature': sign, 'timestamp': timestamp, 'nonce': nonce})}"
        shown_url = (
            f"{base}?{urlencode({'signature': MASK, 'timestamp': timestamp, 'nonce': nonce})}"
        )
        shown_headers = dict(headers)
    return Prepared(target, "POST", url, headers, data, body, shown_body, shown_url, shown_headers)


def _v1_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


@dataclass
class Verdict:
    ok: bool
    result_code: str
    result_msg: str
    body_sign: str  # "verified with kit key #1", "absent (not required for V2)", "MISMATCH", …
    problems: list[str]
    answer: dict[str, Any]
    # The answer follows the protocol (status, JSON envelope, Body-Sign) but its code is not an
    # expected one: a refusal, which `assessment` weighs (see `assess_refusal`).
    refused: bool = False
    assessment: str = ""


@dataclass
class Exchange:
    prepared: Prepared
    status: int
    content_type: str
    response_headers: dict[str, str]
    response_body: bytes
    duration_ms: float
    verdict: Verdict


def parse_body_sign(header: str) -> str | None:
    """The signature of `Body-Sign: sign_type="HMAC-SHA256", signature= "<b64>"` (§3.4)."""
    for part in header.split(","):
        name, _, value = part.partition("=")
        if name.strip().lower() == "signature":
            return value.strip().strip('"')
    return None


def check_body_sign(
    target: Target, header: str | None, body: bytes, keys: Keys
) -> tuple[bool, str]:
    import hmac

    label = "kit" if target.is_kit else "basic"
    if header is None:
        if target.v1:
            return False, "absent, but mandatory for V1 (§3.4)"
        return True, "absent (not required for V2)"
    given = parse_body_sign(header)
    if not given or not header.replace(" ", "").startswith('sign_type="HMAC-SHA256"'):
        return False, f"malformed header {header!r} (§3.4)"
    for position, key in enumerate(keys.family(target), start=1):
        if hmac.compare_digest(signing.body_signature(key, body).encode(), given.encode()):
            return True, f"verified with {label} key #{position}"
    return False, f"MISMATCH: no {label} key signs these bytes (§3.4)"


def judge(
    target: Target,
    status: int,
    content_type: str,
    body_sign: str | None,
    content: bytes,
    keys: Keys,
    expect: tuple[str, ...] = ACCEPTED,
) -> Verdict:
    problems: list[str] = []
    answer: dict[str, Any] = {}
    if status != 200:
        problems.append(f"HTTP {status}, expected 200 (§2.4)")
    if not content_type.lower().startswith("application/json"):
        problems.append(f"Content-Type {content_type or 'missing'}, expected application/json")
    try:
        parsed = json.loads(content)
        if isinstance(parsed, dict):
            answer = parsed
        else:
            problems.append("the answer is not a JSON object")
    except (json.JSONDecodeError, UnicodeDecodeError):
        problems.append("the answer is not JSON")
    code = str(answer.get("resultCode", ""))
    message = str(answer.get("resultMsg", ""))
    if answer and list(answer)[:1] != ["resultCode"]:
        problems.append("resultCode is not the first key (§2.4)")
    conforms = not problems
    unexpected = bool(answer) and code not in expect
    if unexpected:
        problems.append(f"resultCode {code or 'missing'}, expected {' or '.join(expect)}")
    sign_ok, sign_note = check_body_sign(target, body_sign, content, keys)
    if not sign_ok:
        problems.append(f"Body-Sign {sign_note}")
        conforms = False
    refused = conforms and unexpected and bool(code)
    return Verdict(not problems, code, message, sign_note, problems, answer, refused)


# Refusals that are the deployment's own failing, whatever the call said (§6.1).
_DEPLOYMENT_FAULTS = {
    "000001": "not what KooGallery would expect if both sides hold the same keys: the deployment "
    "did not verify the signature (compare its KOOGALLERY_KIT_KEY / KOOGALLERY_BASIC_KEY with "
    "the simulator's, and --key-index)",
    "000005": "not what KooGallery would expect: an internal error in the deployment (its log "
    "and the call's journal row say more)",
}


def call_refusal(target: Target, body: dict[str, Any]) -> str | None:
    """Why this copy of the service's rules refuses the call as sent (`000002` and its
    reason), or None when they accept its fields: the interface's own serializer, as the
    deployment runs it (§2.3 step 6)."""
    from django.urls import NoReverseMatch, resolve, reverse

    from koogallery.inbound import activities
    from koogallery.inbound.endpoint import Rejected, validate
    from koogallery.inbound.journal import Family

    if target.is_kit:
        try:
            view = resolve(reverse(f"kit-{'v1' if target.v1 else 'v2'}-{target.name}")).func
        except NoReverseMatch:
            return None
        view_class = view.view_class
        serializer_class = (target.v1 and view_class.v1_serializer_class) or (
            view_class.serializer_class
        )
    else:
        name = body.get("activity")
        if not isinstance(name, str) or not name:
            return "activity: This field is required."
        activity = activities.lookup(Family.BASIC_V1 if target.v1 else Family.BASIC_V2, name)
        if activity is None:
            return f"activity: unknown activity {name!r}"
        serializer_class = activity.serializer_class
    try:
        validate(serializer_class, body)
    except Rejected as rejection:
        return rejection.message or rejection.code.label
    return None


def assess_refusal(target: Target, body: dict[str, Any], code: str) -> str:
    """Whether a well-formed refusal is what KooGallery would expect of the deployment."""
    from koogallery.protocol.resultcodes import ResultCode

    if code in _DEPLOYMENT_FAULTS:
        return _DEPLOYMENT_FAULTS[code]
    if code == ResultCode.INVALID_PARAM:
        reason = call_refusal(target, body)
        if reason:
            return (
                "what KooGallery would expect: a correct refusal, the call itself is invalid "
                f"({reason})"
            )
        return (
            "not what KooGallery would expect from these rules: the call's fields are valid "
            "here, so the refusal comes from the deployment (its data, or another version); "
            "resultMsg says why"
        )
    try:
        meaning = ResultCode(code).label
    except ValueError:
        return f"not what KooGallery would expect: {code} is no result code of the protocol (§6.1)"
    return (
        f"what KooGallery would expect when the deployment's data says so ({meaning}), e.g. "
        "for an instanceId it does not know: check the ids the call names"
    )


def send(
    prepared: Prepared,
    keys: Keys,
    *,
    expect: tuple[str, ...] = ACCEPTED,
    timeout: float = 10.0,
    session: requests.Session | None = None,
) -> Exchange:
    http = session or requests.Session()
    started = time.monotonic()
    try:
        response = http.request(
            prepared.method,
            prepared.url,
            data=prepared.data or None,
            headers=prepared.headers,
            timeout=timeout,
            allow_redirects=False,  # KooGallery does not follow redirects: show them
        )
    except requests.RequestException as exc:
        raise SimulatorError(f"{prepared.method} {prepared.shown_url}: {exc}") from None
    duration = (time.monotonic() - started) * 1000
    content_type = response.headers.get("Content-Type", "")
    verdict = judge(
        prepared.target,
        response.status_code,
        content_type,
        response.headers.get("Body-Sign"),
        response.content,
        keys,
        expect,
    )
    if verdict.refused:
        verdict.assessment = assess_refusal(prepared.target, prepared.body, verdict.result_code)
    return Exchange(
        prepared,
        response.status_code,
        content_type,
        dict(response.headers),
        response.content,
        round(duration, 1),
        verdict,
    )


# --- printing ----------------------------------------------------------------------------------
def describe(exchange: Exchange) -> Iterator[str]:
    """The request (secrets masked), the answer and the verdict, as printed lines."""
    p = exchange.prepared
    yield f"--> {p.method} {p.shown_url}"
    for name, value in p.shown_headers.items():
        yield f"    {name}: {value}"
    if p.method == "POST":
        yield "    " + json.dumps(p.shown_body, ensure_ascii=False)
    yield f"<-- HTTP {exchange.status} in {exchange.duration_ms} ms"
    for name in ("Content-Type", "Body-Sign", "X-Request-ID"):
        if name in exchange.response_headers:
            yield f"    {name}: {exchange.response_headers[name]}"
    answer = exchange.verdict.answer
    shown = json.dumps(_mask(answer), ensure_ascii=False) if answer else None
    yield "    " + (shown or exchange.response_body.decode("utf-8", "replace"))[:4000]
    yield verdict_line(exchange)


def verdict_line(exchange: Exchange) -> str:
    v = exchange.verdict
    head = f"{'PASS' if v.ok else 'FAIL'} {exchange.prepared.target.name}"
    head += f" ({exchange.prepared.target.family_label})"
    if v.ok:
        return f"{head}: {v.result_code} {v.result_msg}; Body-Sign {v.body_sign}"
    if v.refused:
        return (
            f"REFUSED {exchange.prepared.target.name} ({exchange.prepared.target.family_label}): "
            f"{v.result_code} {v.result_msg} — {v.assessment}; Body-Sign {v.body_sign}"
        )
    return f"{head}: " + "; ".join(v.problems)


def outcome(exchange: Exchange) -> str:
    """One sentence on a call that did not pass: what the deployment answered and whether that
    is what KooGallery would expect (a correct refusal of a bad call is)."""
    v = exchange.verdict
    if v.refused:
        return f"the deployment answered {v.result_code} {v.result_msg!r}: {v.assessment}"
    return "the deployment did not answer as KooGallery expects: " + "; ".join(v.problems)


# --- replaying a journaled call ------------------------------------------------------------------
def journaled_call(pk: int) -> tuple[Target, dict[str, Any]]:
    """The target and body of journal row `pk`, to send again (docs/operations.md, "Replaying a
    journaled call"). The replay is a new call: new nonce and timestamp, signed anew with the
    configured keys; the handlers are idempotent on natural keys, so it repeats the effect.

    The journal keeps bodies redacted (STYLE.md §1): a body whose secrets were masked, or that
    was truncated, cannot be replayed from it.
    """
    from koogallery.inbound.journal import Family, InboundCall
    from koogallery.protocol.redaction import REDACTED

    try:
        call = InboundCall.objects.get(pk=pk)
    except InboundCall.DoesNotExist:
        raise SimulatorError(f"no journaled call #{pk}") from None
    try:
        body = json.loads(call.request_body)
    except json.JSONDecodeError:
        raise SimulatorError(
            f"call #{pk}: the journal kept only part of the body (not valid JSON)"
        ) from None
    if not isinstance(body, dict):
        raise SimulatorError(f"call #{pk}: the body is not a JSON object")
    family = Family(call.family)
    if family == Family.BASIC_V1:
        # The token is recomputed, and timeStamp renewed: V1 GETs are refused after 24 h (§4.4).
        body.pop("authToken", None)
        body["timeStamp"] = v1_time_stamp()
    masked = sorted(k for k, v in _flatten(body) if v == REDACTED)
    if masked:
        raise SimulatorError(
            f"call #{pk}: the journal masked {', '.join(masked)}; ask KooGallery to send it "
            "again (seller console → 生产接口消息 → 重新启动) or send it with the real value"
        )
    if any(
        isinstance(v, str) and v.startswith("… ") and v.endswith("more items")
        for _, v in _flatten(body)
    ):
        raise SimulatorError(f"call #{pk}: the journal kept only the first items of a long list")
    is_kit = family in (Family.KIT_V2, Family.KIT_V1)
    name = call.endpoint if is_kit else str(body.get("activity") or "")
    if not name:
        raise SimulatorError(f"call #{pk}: no interface or activity to call")
    return Target(name, v1=family in (Family.KIT_V1, Family.BASIC_V1)), body


def _flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{path}[{i}]")
    else:
        yield path, value


# --- the buyer journey -------------------------------------------------------------------------
@dataclass
class Step:
    name: str  # as printed, e.g. "freeze"
    target: Target
    context: dict[str, Any] = field(default_factory=dict)
    # Pulls ids out of the answer into the journey (newInstance's instanceId).
    after: Callable[[Journey, dict], None] | None = None


def _keep_instance_id(j: Journey, answer: dict) -> None:
    j.instance_id = str(answer.get("instanceId") or "")


BUYER_JOURNEY_V2 = (
    Step("newInstance", Target("newInstance"), after=_keep_instance_id),
    Step("tenantSync", Target("tenantSync")),
    Step("applicationSync", Target("applicationSync")),
    Step("allOrgSync", Target("allOrgSync")),
    Step("authSync", Target("authSync")),
    Step("singleOrgSync", Target("singleOrgSync")),
    Step("getLicenseAsync", Target("getLicenseAsync")),
    Step("refresh", Target("refreshInstance")),
    Step("freeze", Target("updateInstanceStatus"), {"status": "FREEZE"}),
    Step("unfreeze", Target("updateInstanceStatus"), {"status": "UNFREEZE"}),
    Step("release", Target("releaseInstance")),
)

# V1 products have no getLicenseAsync; freeze is `expireInstance`, a renewal unfreezes (§4.4).
BUYER_JOURNEY_V1 = (
    Step("newInstance", Target("newInstance", v1=True), after=_keep_instance_id),
    Step("tenantSync", Target("tenantSync", v1=True)),
    Step("applicationSync", Target("applicationSync", v1=True)),
    Step("allOrgSync", Target("allOrgSync", v1=True)),
    Step("authSync", Target("authSync", v1=True)),
    Step("singleOrgSync", Target("singleOrgSync", v1=True)),
    Step("freeze", Target("expireInstance", v1=True)),
    Step("refresh", Target("refreshInstance", v1=True)),
    Step("release", Target("releaseInstance", v1=True)),
)


@dataclass
class StepResult:
    number: int
    step: Step
    exchange: Exchange | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.exchange is not None and self.exchange.verdict.ok

    def line(self) -> str:
        head = f"{self.number:02d} {self.step.name:<16}"
        if self.exchange is None:
            return f"FAIL {head} {self.error}"
        v = self.exchange.verdict
        extra = ""
        if self.step.after is not None and v.answer.get("instanceId"):
            extra = f" instanceId={v.answer['instanceId']}"
        if v.ok:
            return (
                f"PASS {head} {v.result_code} {v.result_msg}{extra} "
                f"({self.exchange.duration_ms} ms; Body-Sign {v.body_sign})"
            )
        return f"FAIL {head} " + "; ".join(v.problems)


def prepare_body(
    target: Target,
    body: dict[str, Any],
    *,
    public_key: rsa.RSAPublicKey | None = None,
) -> dict[str, Any]:
    """Encrypt applicationSync's clientSecret as KooGallery does (§3.6)."""
    if target.name == "applicationSync" and body.get("clientSecret"):
        key = public_key or public_key_from_settings()
        body = {**body, "clientSecret": encrypt_client_secret(str(body["clientSecret"]), key)}
    return body


def buyer_journey(
    *,
    base_url: str,
    keys: Keys,
    journey: Journey | None = None,
    v1: bool = False,
    key_index: int = 0,
    public_key: rsa.RSAPublicKey | None = None,
    timeout: float = 10.0,
    on_step: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Run the purchase-to-release sequence (§1.3), stopping at the first failing step."""
    j = journey or Journey()
    results: list[StepResult] = []
    session = requests.Session()
    for number, step in enumerate(BUYER_JOURNEY_V1 if v1 else BUYER_JOURNEY_V2, start=1):
        try:
            body = default_body(step.target, j, **step.context)
            body = prepare_body(step.target, body, public_key=public_key)
            prepared = prepare(step.target, body, base_url=base_url, keys=keys, key_index=key_index)
            exchange = send(prepared, keys, timeout=timeout, session=session)
            result = StepResult(number, step, exchange)
        except SimulatorError as exc:
            result = StepResult(number, step, None, str(exc))
        results.append(result)
        if on_step:
            on_step(result)
        if not result.ok:
            break
        if step.after is not None:
            step.after(j, result.exchange.verdict.answer)
    return results
