"""Verify a licence token offline, as the merchant's software does (spec §2.8).

    manage.py license_verify <token | file.lic | ->  [--public-key PEM|path|raw]
                             [--fingerprint FP] [--at 2025-01-01T00:00:00Z] [--json]

Checks, in order: the Ed25519 signature with the public key (default: the one of
LICENSE_SIGNING_KEY), then `nbf` ≤ now < `exp`, then `fp` against --fingerprint when given.
Exit code 0: valid; 1: invalid (the report says why); 2: bad usage (no key, unreadable input).
"""

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from licensing import tokens
from licensing.serializers import parse_license_time

INVALID = 1
USAGE = 2


class Command(BaseCommand):
    help = "Verify a licence token: signature, validity window, device fingerprint."

    def add_arguments(self, parser):
        parser.add_argument("token", help="the token, a file holding it (.lic), or - for stdin")
        parser.add_argument(
            "--public-key",
            help="PEM text, PEM file, or raw base64url key (default: from LICENSE_SIGNING_KEY)",
        )
        parser.add_argument("--fingerprint", help="the device fingerprint the licence must name")
        parser.add_argument("--at", help="check validity at this UTC time instead of now")
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="print the report as JSON"
        )

    def handle(self, *args, token, public_key, fingerprint, at, as_json: bool, **options):
        text = self._read_token(token)
        key = self._public_key(public_key)
        moment = self._moment(at)
        report: dict = {"valid": False, "key_id": tokens.key_id(key)}
        try:
            payload = tokens.verify(text, key)
        except tokens.InvalidToken as exc:
            report["problems"] = [str(exc)]
            return self._finish(report, as_json=as_json)
        report["payload"] = payload
        try:
            check = tokens.check_claims(payload, at=moment, fingerprint=fingerprint)
        except tokens.InvalidToken as exc:
            report["problems"] = [str(exc)]
            return self._finish(report, as_json=as_json)
        report.update(
            valid=check.ok,
            problems=check.problems,
            checked_at=tokens.format_time(moment),
            not_before=payload["nbf"],
            expires=payload.get("exp"),
            fingerprint_matches=check.fingerprint_matches,
        )
        if check.expires is not None:
            report["days_left"] = round((check.expires - moment).total_seconds() / 86400, 1)
        return self._finish(report, as_json=as_json)

    # --- input -------------------------------------------------------------------------------
    def _read_token(self, value: str) -> str:
        if value == "-":
            return sys.stdin.read().strip()
        path = Path(value)
        try:
            is_file = path.is_file()
        except OSError:  # e.g. a token too long to be a file name
            is_file = False
        if not is_file:
            return value.strip()
        try:
            return path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {value}: {exc}", returncode=USAGE) from None

    def _public_key(self, value: str | None):
        try:
            if value:
                return tokens.load_public_key(value)
            return tokens.load_private_key(settings.LICENSE_SIGNING_KEY).public_key()
        except tokens.SigningKeyError as exc:
            raise CommandError(
                f"{exc}; pass --public-key (PEM, file or raw base64url)", returncode=USAGE
            ) from None

    def _moment(self, value: str | None) -> datetime:
        if not value:
            return datetime.now(UTC)
        try:
            return parse_license_time(value)
        except ValueError:
            raise CommandError(
                f"--at {value!r}: use 'yyyy-MM-dd HH:mm:ss' (UTC) or ISO-8601", returncode=USAGE
            ) from None

    # --- output ------------------------------------------------------------------------------
    def _finish(self, report: dict, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, ensure_ascii=False, sort_keys=True))
        else:
            self.stdout.write(self._text(report))
        if not report["valid"]:
            raise SystemExit(INVALID)

    def _text(self, report: dict) -> str:
        payload = report.get("payload")
        lines = [f"licence: {'VALID' if report['valid'] else 'INVALID'}"]
        lines += [f"  problem: {problem}" for problem in report.get("problems", [])]
        if payload is None:
            lines.append(f"  signature: not verified with key {report['key_id']}")
            return "\n".join(lines)
        lines.append(f"  signature: OK (public key {report['key_id']})")
        if "checked_at" not in report:
            return "\n".join(lines)
        expires = report.get("expires")
        if expires is None:
            expiry = "never (no exp)"
        elif report["days_left"] <= 0:
            expiry = f"{expires} (expired)"
        else:
            expiry = f"{expires} ({report['days_left']} days left)"
        matches = {True: "matches", False: "DOES NOT MATCH", None: "not checked"}
        lines += [
            f"  licence id: {payload.get('lid')}",
            f"  instance: {payload.get('iid')}  event: {payload.get('eid')}",
            f"  device fingerprint: {payload.get('fp')!r} "
            f"({matches[report['fingerprint_matches']]})",
            f"  valid from: {report['not_before']}",
            f"  expires: {expiry}",
            f"  issued at: {payload.get('iat')}",
            f"  checked at: {report['checked_at']}",
        ]
        for claim, label in (("cid", "customer"), ("pid", "product"), ("sku", "SKU")):
            if claim in payload:
                lines.append(f"  {label}: {payload[claim]}")
        if payload.get("test"):
            lines.append("  TEST licence (debug data)")
        lines.append("payload:")
        lines.append(json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True))
        return "\n".join(lines)
