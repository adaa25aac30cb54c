"""Inbound KooGallery endpoints: verification, envelope, journal, one transaction per call.

Domain apps subclass `KitEndpoint` (or register basic activities, see `activities.py`) and only
declare a serializer and a `perform` that calls one service. Everything protocol-shaped lives
here: which header carries what, the verification order of spec §2.3, the response rules of §2.4
and the journal of STYLE.md §1.
"""

import json
import logging
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, OperationalError, connection, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.log import log_response
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers

from koogallery.inbound import v1_answers
from koogallery.inbound.fastvalidate import validated_data
from koogallery.inbound.journal import (
    Family,
    InboundCall,
    Verification,
    body_digest,
    is_replay,
    redacted_query,
    redacted_text,
    replay_key,
    response_text,
)
from koogallery.protocol import signed_text, signing
from koogallery.protocol.envelope import CONTENT_TYPE, envelope_response
from koogallery.protocol.jsonbody import BodyError, parse_json
from koogallery.protocol.resultcodes import KooGalleryError, ResultCode
from ops.calls import call_finished
from ops.wsgi import drain

logger = logging.getLogger(__name__)


@dataclass
class Reply:
    """What a handler answers: a code (default success), optional message and extra fields;
    `stale`, for the journal: how many entities a kit call skipped as older than what was
    stored (spec §2.3)."""

    code: ResultCode = ResultCode.SUCCESS
    fields: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    stale: int = 0


@dataclass
class Call:
    """What a handler knows of the call it serves (never headers: those stay here)."""

    family: Family
    endpoint: str
    body: dict[str, Any]
    journal: InboundCall
    # The active key that verified the call: V1 answers encrypt credentials with it (§3.5).
    key: str | None = field(default=None, repr=False)

    @property
    def is_v1(self) -> bool:
        return self.family in (Family.KIT_V1, Family.BASIC_V1)


REPLAYED_MESSAGE = "nonce already used"


class Rejected(Exception):
    def __init__(self, code: ResultCode, message: str | None = None, verification=None):
        self.code, self.message, self.verification = code, message, verification
        super().__init__(message)


def family_keys(family: Family) -> list[str]:
    if family in (Family.KIT_V2, Family.KIT_V1):
        return list(settings.KOOGALLERY_KIT_KEY)
    return list(settings.KOOGALLERY_BASIC_KEY)


def serializer_error_message(errors: Any, prefix: str = "") -> str:
    """The first violation as `field.path: message`, so the caller can see what to fix."""
    if isinstance(errors, dict):
        for name, sub in errors.items():
            path = (
                prefix if name == "non_field_errors" else (f"{prefix}.{name}" if prefix else name)
            )
            return serializer_error_message(sub, path)
    if isinstance(errors, list):
        for index, sub in enumerate(errors):
            if sub in ({}, [], None):
                continue
            if isinstance(sub, (dict, list)):
                return serializer_error_message(sub, f"{prefix}[{index}]")
            return f"{prefix}: {sub}" if prefix else str(sub)
    return f"{prefix}: {errors}" if prefix else str(errors)


def validate(serializer_class: type[serializers.Serializer], body: dict, *, v1=False) -> dict:
    if v1:
        body = _blank_when_absent(serializer_class, body)
    # A plainly valid body skips most of DRF; anything else gets DRF's verdict and message.
    data = validated_data(serializer_class, body)
    if data is not None:
        return data
    serializer = serializer_class(data=body)
    if not serializer.is_valid():
        raise Rejected(ResultCode.INVALID_PARAM, serializer_error_message(serializer.errors))
    return serializer.validated_data


_BLANKABLE: dict[type, tuple[str, ...]] = {}


def _blank_when_absent(serializer_class: type[serializers.Serializer], body: dict) -> dict:
    """A V1 join skips a blank parameter as it skips an absent one (spec §2.3), so the two
    must be read alike: as blank wherever the field may be blank (kit `instanceId` while
    debugging; singleOrgSync `parentCode` "" = top level, as Huawei sends it), else absent."""
    names = _BLANKABLE.get(serializer_class)
    if names is None:
        names = _BLANKABLE[serializer_class] = tuple(
            name
            for name, f in serializer_class().fields.items()
            if not f.read_only and getattr(f, "allow_blank", False)
        )
    missing = [name for name in names if name not in body]
    return {**body, **dict.fromkeys(missing, "")} if missing else body


def _client_ip(request: HttpRequest) -> str:
    return (request.META.get("REMOTE_ADDR") or "")[:64]


def read_body(request: HttpRequest) -> bytes | None:
    """The raw body, or None past DATA_UPLOAD_MAX_MEMORY_SIZE (sized for a 100k-department
    allOrgSync in config/settings.py): Django would answer its own 400 page, we answer 000002."""
    try:
        return request.body
    except RequestDataTooBig:
        _discard_body(request)
        return None


def _discard_body(request: HttpRequest) -> None:
    """Read what the client is still sending, without keeping it: a server that answers and
    closes mid-upload makes the client fail on a reset connection instead of reading 000002.
    Bounded (twice the limit): past that, the connection is closed on the sender."""
    budget = 2 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if _declared_size(request) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE + budget:
        return  # could not be read to its end anyway
    try:
        drain(request, budget)
    except OSError:
        return  # the client went away


def _declared_size(request: HttpRequest) -> int:
    try:
        return min(max(int(request.META.get("CONTENT_LENGTH") or 0), 0), 2**31 - 1)
    except ValueError:
        return 0


def _short(value: Any, size: int) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)[:size]


@method_decorator(csrf_exempt, name="dispatch")
class InboundEndpoint(View):
    """Shared skeleton: subclasses implement `authenticate` and `handle`."""

    endpoint_name = ""
    family: Family

    # --- hooks --------------------------------------------------------------------------------
    def check_credentials(self, request: HttpRequest) -> None:
        """What can be refused from the headers (or query) alone, before the body is read:
        raise `Rejected`. A call that cannot be genuine never costs a body read."""

    @classmethod
    def refuses_on_head(cls, request: HttpRequest, **initkwargs) -> bool:
        """Asked by the server before it reads a body (ops/wsgi.py): whether this POST will be
        refused by `check_credentials`. Then its body is never read, even while it dribbles
        in; the view answers it (and journals it) as usual."""
        if request.method != "POST":
            return False
        try:
            cls(**initkwargs).check_credentials(request)
        except Rejected:
            return True
        return False

    def authenticate(self, request: HttpRequest, raw: bytes, parsed: Any) -> str:
        """Verify the call; return the key that matched or raise `Rejected`."""
        raise NotImplementedError

    def v1_token(self, request: HttpRequest, parsed: Any) -> str:
        """The V1 call's authToken as verified (its replay claim); "" for V2."""
        return ""

    @property
    def is_v1(self) -> bool:
        return self.family in (Family.KIT_V1, Family.BASIC_V1)

    def handle(self, call: Call) -> Reply:
        raise NotImplementedError

    def endpoint_for(self, body: Any) -> str:
        return self.endpoint_name

    def read_only(self, body: dict) -> bool:
        """The call only reads: no transaction is opened around it (its journal row, the only
        write, is one statement). A V1 call always has one: it claims its authToken."""
        return False

    def nonce(self, request: HttpRequest) -> str:
        """The call's V2 nonce (empty for V1), recorded in the journal row as its replay claim."""
        return ""

    def http_method_not_allowed(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        """405 with `Allow` (§2.4: only a method the endpoint does not serve; OPTIONS too:
        nothing here is for browsers), answered like every call: the JSON envelope (Huawei's
        pages say answers are JSON), `000002` naming the methods served, signed with the
        family's first key (§3.4)."""
        allowed = self._allowed_methods()
        served = ", ".join(allowed)
        if request.method in allowed:  # GET /koogallery without `activity` (§2.1, §4.4)
            detail = f"{request.method} without activity is not served; served: {served}"
        else:
            detail = f"method {request.method} not allowed; served: {served}"
        keys = family_keys(self.family)
        response = envelope_response(
            ResultCode.INVALID_PARAM, detail, None, keys[0] if keys else None, status=405
        )
        response["Allow"] = served
        log_response(
            "Method Not Allowed (%s): %s",
            request.method,
            request.path,
            response=response,
            request=request,
        )
        return response

    # --- the pipeline -------------------------------------------------------------------------
    def serve(self, request: HttpRequest, *, has_body: bool = True) -> HttpResponse:
        """Answer one call. Its credentials are checked from the headers first: the body is
        read only for a call that may be genuine (spec §2.3)."""
        started = time.monotonic()
        journal = InboundCall(
            received_at=timezone.now(),
            family=self.family,
            endpoint=self.endpoint_name,
            method=request.method or "",
            path=request.path[:255],
            remote_addr=_client_ip(request),
            request_size=_declared_size(request) if has_body else 0,
            request_sha256="",
            query_string=self.journal_query(request),
            verification=Verification.MISSING,
        )
        try:
            self.check_credentials(request)
        except Rejected as rejection:
            if rejection.verification:
                journal.verification = rejection.verification
            reply = Reply(rejection.code, message=rejection.message)
            return self.answer_rejected(journal, reply, None, started)
        return self.serve_body(request, journal, started, has_body)

    def serve_body(self, request, journal: InboundCall, started: float, has_body: bool):
        key: str | None = None
        digest = ""
        try:
            raw = read_body(request) if has_body else b""
            oversized = raw is None
            if oversized:
                parsed, raw = None, b""
                parse_error = (
                    f"request body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
                )
            else:
                journal.request_size = len(raw)
                journal.request_sha256 = body_digest(raw)
                parsed, parse_error = self.parse(request, raw)
            self.fill_business_keys(journal, parsed)
            journal.request_body = redacted_text(raw, parsed)
            if oversized or (self.is_v1 and not isinstance(parsed, dict)):
                # Never read, or not name=value pairs: not verifiable, refused before any key
                # is tried.
                raise Rejected(ResultCode.INVALID_PARAM, parse_error)
            key = self.authenticate(request, raw, parsed)
            journal.verification = Verification.VERIFIED
            journal.nonce = replay_key(self.nonce(request))
            journal.key_index = family_keys(self.family).index(key)
            if parse_error:
                raise Rejected(ResultCode.INVALID_PARAM, parse_error)
            journal.endpoint = self.endpoint_for(parsed)[:64]
            if self.is_v1:
                digest = v1_answers.token_digest(self.v1_token(request, parsed))
                # What the service reads is what the token signs (spec §2.3).
                parsed = signed_text.v1_reading(parsed)
                stored = v1_answers.stored_answer(
                    family=self.family, endpoint=journal.endpoint, digest=digest
                )
                if stored is not None:
                    return self.answer_again(journal, stored, key, started)
            return self.run_in_transaction(parsed, journal, key, started, digest)
        except Rejected as rejection:
            if rejection.verification:
                journal.verification = rejection.verification
            reply = Reply(rejection.code, message=rejection.message)
        except Exception as exc:
            if isinstance(exc, IntegrityError) and is_replay(exc):
                # Another call with this nonce was journaled first: everything this one wrote
                # is rolled back with its own journal row (spec §2.3 step 5).
                return self.answer_rejected(journal, replay_rejection(journal), key, started)
            if isinstance(exc, IntegrityError) and digest and v1_answers.is_claim_conflict(exc):
                # Its twin claimed the authToken first and has committed (the claim waited
                # for it): this one rolled back and answers as the twin did.
                stored = v1_answers.stored_answer(
                    family=self.family, endpoint=journal.endpoint, digest=digest
                )
                if stored is not None:
                    return self.answer_again(journal, stored, key, started)
            logger.exception("KooGallery %s failed", journal.endpoint)
            journal.error = traceback.format_exc()[-8000:]
            reply = Reply(ResultCode.INTERNAL_ERROR)
            if _database_unreachable(exc):
                # Connecting again for the journal would wait another connect_timeout and
                # overrun KooGallery's 5 s (§1.3): the call and its failure are in the log.
                response = self.respond(reply, key)
                self.save_journal(journal, reply, response, started, write=False)
                return response
        return self.answer_rejected(journal, reply, key, started)

    def run_in_transaction(
        self, parsed: dict, journal, key: str, started: float, v1_digest: str = ""
    ) -> HttpResponse:
        """Domain writes and the journal row commit together; a rejection rolls both back.
        A V1 call claims its authToken first and keeps its answer with them."""
        call = Call(
            family=self.family, endpoint=journal.endpoint, body=parsed, journal=journal, key=key
        )
        read_only = not v1_digest and self.read_only(parsed)
        # A read-only call needs no transaction: its journal row, its one write, is a single
        # statement (guarded only so that a replay fails cleanly inside a caller's transaction).
        scope = _statement_guard if read_only else transaction.atomic
        with scope():
            claim = None
            if v1_digest:
                claim = v1_answers.claim(
                    family=self.family, endpoint=journal.endpoint, digest=v1_digest
                )
            try:
                reply = self.handle(call)
            except KooGalleryError as exc:
                reply = Reply(exc.code, message=exc.message)
            if reply.code.accepted:
                response = self.respond(reply, key)
                if claim is not None:
                    v1_answers.keep(claim, response.content)
                self.save_journal(journal, reply, response, started, raise_replay=read_only)
                return response
            if not read_only:
                transaction.set_rollback(True)
        return self.answer_rejected(journal, reply, key, started)

    def answer_again(self, journal, content: bytes, key: str, started: float) -> HttpResponse:
        """A V1 replay: the first call's answer, byte for byte; nothing changes (spec §2.3)."""
        response = HttpResponse(content, content_type=CONTENT_TYPE, status=200)
        response["Body-Sign"] = signing.body_sign_header(key, content)
        answer = json.loads(content)
        reply = Reply(ResultCode(answer["resultCode"]), message=answer.get("resultMsg"))
        journal.verification = Verification.ANSWERED_AGAIN
        self.save_journal(journal, reply, response, started)
        return response

    def answer_rejected(self, journal, reply: Reply, key: str | None, started: float):
        """Answer and journal a refused call (outside the call's rolled-back transaction).

        A verified call carries its nonce into the journal: if that nonce was used before, the
        row cannot be written and the call is answered as the replay it is."""
        response = self.respond(reply, key)
        if journal.verification != Verification.VERIFIED or not journal.nonce:
            self.save_journal(journal, reply, response, started)
            return response
        try:
            with _statement_guard():
                self.save_journal(journal, reply, response, started, raise_replay=True)
        except IntegrityError as exc:
            if not is_replay(exc):
                raise
            reply = replay_rejection(journal)
            response = self.respond(reply, key)
            self.save_journal(journal, reply, response, started)
        return response

    def respond(self, reply: Reply, key: str | None) -> HttpResponse:
        keys = family_keys(self.family)
        return envelope_response(
            reply.code, reply.message, reply.fields, key or (keys[0] if keys else None)
        )

    def save_journal(
        self,
        journal,
        reply: Reply,
        response: HttpResponse,
        started: float,
        *,
        write=True,
        raise_replay=False,
    ) -> None:
        journal.result_code = reply.code.value
        journal.result_msg = (reply.message or reply.code.label)[:255]
        journal.stale_entities = reply.stale
        journal.response_body = response_text(response.content)
        journal.duration_ms = round((time.monotonic() - started) * 1000, 3)
        try:
            if write:
                journal.write()
        except IntegrityError as exc:
            if is_replay(exc) and (raise_replay or connection.in_atomic_block):
                raise  # the caller answers the replay (inside a call's transaction: rolls back)
            logger.exception("could not write the journal row for %s", journal.endpoint)
        except Exception:
            # The answer still goes out; the failure is visible in the logs.
            logger.exception("could not write the journal row for %s", journal.endpoint)
        # Metrics and the structured log line with the call's business keys (ops/calls.py).
        call_finished(journal)

    # --- helpers ------------------------------------------------------------------------------
    def parse(
        self, request: HttpRequest, raw: bytes, *, unique_keys: bool = False
    ) -> tuple[Any, str | None]:
        content_type = (request.META.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
        try:
            parsed = parse_json(raw, unique_keys=unique_keys)
        except BodyError as exc:
            return None, str(exc)
        if content_type != "application/json":
            return parsed, f"Content-Type must be application/json, not {content_type or 'none'}"
        if not isinstance(parsed, dict):
            return parsed, "body must be a JSON object"
        return parsed, None

    def journal_query(self, request: HttpRequest) -> str:
        return redacted_query({k: request.GET.get(k) for k in request.GET})

    def fill_business_keys(self, journal: InboundCall, body: Any) -> None:
        if not isinstance(body, dict):
            return
        journal.tenant_id = _short(body.get("tenantId"), 64)
        journal.instance_id = _short(body.get("instanceId"), 128)
        journal.order_id = _short(body.get("orderId"), 64)
        journal.event_id = _short(body.get("eventId") or body.get("license"), 64)
        flag = body.get("testFlag")
        journal.test_flag = None if flag in (None, "") else str(flag) == "1"


def _statement_guard():
    """Around a journal insert that may fail on the nonce: in a transaction (tests, callers of
    their own) a savepoint, so it fails cleanly; in autocommit nothing, it fails alone."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def replay_rejection(journal: InboundCall) -> Reply:
    """The call reused a nonce: its row is written as a refused replay (a new row, not bound
    by the nonce's uniqueness, which covers verified calls only)."""
    journal.pk = None
    journal._state.adding = True
    journal.verification = Verification.REPLAYED
    return Reply(ResultCode.AUTH_FAILED, message=REPLAYED_MESSAGE)


def _database_unreachable(exc: Exception) -> bool:
    """The call failed because no connection to the database could be made."""
    return isinstance(exc, OperationalError) and connection.connection is None


def check_v2_headers(signature, timestamp, nonce) -> None:
    """Spec §2.3 steps 2–3, from the headers (kit) or query (basic) alone: the signature is
    there, the timestamp and nonce are canonical (so the signed text splits back one way only)
    and the timestamp is inside the window."""
    if not signature:
        raise Rejected(ResultCode.AUTH_FAILED, "signature missing", Verification.MISSING)
    if not timestamp or not nonce:
        raise Rejected(ResultCode.INVALID_PARAM, "timestamp or nonce missing", Verification.MISSING)
    problem = signed_text.v2_problem(timestamp, nonce)
    if problem:
        raise Rejected(ResultCode.INVALID_PARAM, problem, Verification.MALFORMED)
    skew_ms = settings.KOOGALLERY_MAX_CLOCK_SKEW_S * 1000
    if abs(time.time_ns() // 1_000_000 - int(timestamp)) > skew_ms:
        raise Rejected(
            ResultCode.INVALID_PARAM, "timestamp outside the accepted window", Verification.STALE
        )


def check_v2_signature(
    family: Family, sign_fn, signature, timestamp, nonce, raw: bytes, parsed: Any
) -> str:
    """Spec §2.3 step 4 (after `check_v2_headers`): the key that signed the call."""
    keys = family_keys(family)
    if not keys:
        logger.error("no %s key configured: every call is refused", family.label)
        raise Rejected(ResultCode.AUTH_FAILED, "authentication failed", Verification.NO_KEY)
    key = signing.verify_v2(
        sign_fn, keys, signature, nonce, timestamp, signing.payload_forms(raw, parsed)
    )
    if key is None:
        raise Rejected(ResultCode.AUTH_FAILED, "signature mismatch", Verification.BAD_SIGNATURE)
    # The nonce is claimed by the call's journal row (journal.NONCE_CONSTRAINT), written in
    # the call's own transaction: see InboundEndpoint.serve.
    return key


def check_v1_token_present(token: str | None) -> None:
    if not token or not token.strip():
        raise Rejected(ResultCode.AUTH_FAILED, "authToken missing", Verification.MISSING)


def check_v1_token(
    family: Family, token: str | None, params: dict, pairs=None, *, token_in_params=False
) -> str:
    """§3.3 after the rules of §2.3 that make the join read back one way only; `pairs`: the
    parameters as received, repeats included (default: `params`)."""
    check_v1_token_present(token)
    problem = signed_text.v1_problem(
        params.items() if pairs is None else pairs, token_in_params=token_in_params
    )
    if problem:
        raise Rejected(ResultCode.INVALID_PARAM, problem, Verification.MALFORMED)
    keys = family_keys(family)
    if not keys:
        logger.error("no %s key configured: every call is refused", family.label)
        raise Rejected(ResultCode.AUTH_FAILED, "authentication failed", Verification.NO_KEY)
    key = signing.verify_v1(keys, token, params)
    if key is None:
        raise Rejected(ResultCode.AUTH_FAILED, "authToken mismatch", Verification.BAD_SIGNATURE)
    return key


class KitEndpoint(InboundEndpoint):
    """A kit interface served in V2 (`x-sign` headers) or V1 (`authToken` header) form.

    Subclasses set `serializer_class` (and `v1_serializer_class` when V1 differs) and implement
    `perform(data, call)`, which calls one service and may return a `Reply`.
    """

    http_method_names = ["post"]
    family = Family.KIT_V2
    serializer_class: type[serializers.Serializer]
    v1_serializer_class: type[serializers.Serializer] | None = None

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return self.serve(request)

    def nonce(self, request: HttpRequest) -> str:
        return "" if self.family == Family.KIT_V1 else request.headers.get("x-nonce") or ""

    def check_credentials(self, request: HttpRequest) -> None:
        if self.family == Family.KIT_V1:
            check_v1_token_present(request.headers.get("authToken"))
            return
        check_v2_headers(
            request.headers.get("x-sign"),
            request.headers.get("x-timestamp"),
            request.headers.get("x-nonce"),
        )

    def parse(self, request: HttpRequest, raw: bytes) -> tuple[Any, str | None]:
        # V1 signs `name=value` pairs: a repeated name would be ambiguous (spec §2.3).
        return super().parse(request, raw, unique_keys=self.family == Family.KIT_V1)

    def v1_token(self, request: HttpRequest, parsed: Any) -> str:
        return signing.clean_v1_token(request.headers.get("authToken") or "")

    def authenticate(self, request: HttpRequest, raw: bytes, parsed: Any) -> str:
        if self.family == Family.KIT_V1:
            if not isinstance(parsed, dict):
                raise Rejected(ResultCode.INVALID_PARAM, "body must be a JSON object")
            return check_v1_token(self.family, request.headers.get("authToken"), parsed)
        return check_v2_signature(
            self.family,
            signing.kit_sign,
            request.headers.get("x-sign"),
            request.headers.get("x-timestamp"),
            request.headers.get("x-nonce"),
            raw,
            parsed,
        )

    def handle(self, call: Call) -> Reply:
        serializer_class = (call.is_v1 and self.v1_serializer_class) or self.serializer_class
        data = validate(serializer_class, call.body, v1=call.is_v1)
        reply = self.perform(data, call)
        return reply if isinstance(reply, Reply) else Reply()

    def perform(self, data: dict, call: Call) -> Reply | None:
        raise NotImplementedError
