"""Play KooGallery against a deployment: sign a call with the configured keys, send it, check the
answer (`koogallery/simulator/player.py`). Exit code 0 when every call passed (answered an expected
code), 1 otherwise; a refused call says what the deployment answered and whether KooGallery would
expect that (a correct refusal of an invalid call is what it expects).

    python manage.py koogallery_call tenantSync --url https://merchant.example.com/koogallery
    python manage.py koogallery_call newInstance orderId=MOCKPERIODYEARNEW --url …
    python manage.py koogallery_call authSync --fixture body.json flag:=0 --url …
    python manage.py koogallery_call newInstance --v1 --url …
    python manage.py koogallery_call --scenario buyer-journey --url …

Keys come from KOOGALLERY_KIT_KEY / KOOGALLERY_BASIC_KEY (environment or .env), the same values
the service has. applicationSync encrypts `clientSecret` with the public half of
KOOGALLERY_RSA_PRIVATE_KEY, or with --public-key.
"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from koogallery.simulator import player as simulator
from koogallery.simulator.player import Journey, Keys, SimulatorError, Target


class Command(BaseCommand):
    help = (
        "Send a KooGallery call (kit interface or basic activity) signed as KooGallery does, "
        "verify the answer's envelope and Body-Sign, and print request, response and verdict."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Fields may follow options (`authSync --fixture f.json flag:=0 --url …`).
        parser.parse_args = parser.parse_intermixed_args
        return parser

    def add_arguments(self, parser):
        parser.add_argument(
            "target",
            nargs="?",
            help="kit interface (tenantSync, applicationSync, authSync, singleOrgSync, "
            "allOrgSync) or basic activity (newInstance, queryInstance, refreshInstance, "
            "updateInstanceStatus, releaseInstance, getLicenseAsync, …)",
        )
        parser.add_argument(
            "fields",
            nargs="*",
            help="body fields: name=value (a string) or name:=json (number, list, object); "
            "they override the fixture or the default debug body",
        )
        parser.add_argument(
            "--url",
            required=True,
            help="the registered production address, e.g. https://merchant.example.com/koogallery",
        )
        parser.add_argument("--fixture", help="JSON file with the whole body (sent byte for byte)")
        parser.add_argument(
            "--journal",
            type=int,
            metavar="ID",
            help="send again the call journaled as #ID (admin → inbound calls), re-signed",
        )
        parser.add_argument("--v1", action="store_true", help="legacy V1 signing (authToken)")
        parser.add_argument(
            "--scenario",
            choices=["buyer-journey"],
            help="run a whole sequence instead of one call",
        )
        parser.add_argument(
            "--expect",
            action="append",
            help="result code that counts as a pass (repeatable; default 000000 and 000004)",
        )
        parser.add_argument(
            "--key-index",
            type=int,
            default=1,
            help="which key of the family's comma-separated list signs (1 = first; the V1 key "
            "may be a later one)",
        )
        parser.add_argument(
            "--public-key",
            help="RSA public key for applicationSync's clientSecret: PEM text, PEM file, or the "
            "base64 body given to the seller console (default: derived from "
            "KOOGALLERY_RSA_PRIVATE_KEY)",
        )
        parser.add_argument(
            "--no-encrypt",
            action="store_true",
            help="send clientSecret as given (already encrypted)",
        )
        parser.add_argument(
            "--sign",
            choices=["canonical", "raw"],
            default="canonical",
            help="V2 signed payload: canonical JSON (sorted keys) or the raw bytes (spec §2.3)",
        )
        parser.add_argument("--order-id", default=simulator.MOCK_ORDER_ID)
        parser.add_argument("--instance-id", default="", help="instanceId for the default body")
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")

    def handle(self, *args, **options):
        try:
            keys = Keys.from_settings()
            public_key = (
                simulator.load_public_key(options["public_key"]) if options["public_key"] else None
            )
            if options["scenario"]:
                failure = self.run_journey(keys, public_key, options)
            else:
                failure = self.run_call(keys, public_key, options)
        except SimulatorError as exc:
            raise CommandError(str(exc), returncode=2) from None
        if failure:
            raise CommandError(failure, returncode=1)

    def run_call(self, keys: Keys, public_key, options) -> str:
        """Send one call; "" when it passed, else what went wrong (`simulator.outcome`)."""
        target, body, raw = self.build(options)
        overrides = simulator.parse_assignments(options["fields"])
        if overrides:
            body, raw = {**body, **overrides}, None
        if not options["no_encrypt"]:
            encrypted = simulator.prepare_body(target, body, public_key=public_key)
            if encrypted is not body:
                body, raw = encrypted, None
        prepared = simulator.prepare(
            target,
            body,
            base_url=options["url"],
            keys=keys,
            key_index=options["key_index"] - 1,
            raw=raw,
            sign_form=options["sign"],
        )
        expect = tuple(options["expect"] or simulator.ACCEPTED)
        exchange = simulator.send(prepared, keys, expect=expect, timeout=options["timeout"])
        for line in simulator.describe(exchange):
            self.stdout.write(line)
        return "" if exchange.verdict.ok else simulator.outcome(exchange)

    @staticmethod
    def build(options) -> tuple[Target, dict, bytes | None]:
        """What to send: a journaled call, a fixture, or the default debug body."""
        name, fields = options["target"], options["fields"]
        if options["journal"] is not None:
            if name and "=" in name:  # no target with --journal: that was a field
                fields.insert(0, name)
            elif name:
                raise SimulatorError("--journal names the call already; drop the target")
            target, body = simulator.journaled_call(options["journal"])
            # The journal never holds a clientSecret in clear: nothing to encrypt.
            options["no_encrypt"] = True
            return target, body, None
        if not name:
            raise SimulatorError("name an interface or activity, or use --scenario buyer-journey")
        target = Target(name, v1=options["v1"])
        if not options["fixture"]:
            journey = Journey(order_id=options["order_id"], instance_id=options["instance_id"])
            return target, simulator.default_body(target, journey), None
        path = Path(options["fixture"])
        try:
            text = path.read_text(encoding="utf-8")
            body = json.loads(text)
        except (OSError, ValueError) as exc:
            raise SimulatorError(f"--fixture {path}: {exc}") from None
        if not isinstance(body, dict):
            raise SimulatorError(f"--fixture {path}: not a JSON object")
        return target, body, text.encode("utf-8")

    def run_journey(self, keys: Keys, public_key, options) -> str:
        version = "V1" if options["v1"] else "V2"
        journey = Journey(order_id=options["order_id"])
        self.stdout.write(
            f"Buyer journey ({version}, debug data testFlag 1) against {options['url']}: "
            f"order {journey.order_id} line {journey.order_line_id}, tenant {journey.tenant_id}"
        )
        results = simulator.buyer_journey(
            base_url=options["url"],
            keys=keys,
            journey=journey,
            v1=options["v1"],
            key_index=options["key_index"] - 1,
            public_key=public_key,
            timeout=options["timeout"],
            on_step=lambda result: self.stdout.write(result.line()),
        )
        steps = len(simulator.BUYER_JOURNEY_V1 if options["v1"] else simulator.BUYER_JOURNEY_V2)
        passed = sum(result.ok for result in results)
        failed = [result for result in results if not result.ok]
        if failed and failed[0].exchange is not None:
            self.stdout.write("The failing exchange:")
            for line in simulator.describe(failed[0].exchange):
                self.stdout.write("  " + line)
        self.stdout.write(f"buyer journey: {passed}/{steps} steps passed")
        if passed == steps:
            return ""
        first = failed[0] if failed else None
        if first is not None and first.exchange is not None:
            return f"step {first.step.name}: " + simulator.outcome(first.exchange)
        return f"step {first.step.name}: {first.error}" if first else "buyer journey incomplete"
