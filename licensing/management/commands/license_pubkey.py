"""Print the public key of `LICENSE_SIGNING_KEY`, for the merchant's software (spec §2.8).

manage.py license_pubkey              # PEM (SubjectPublicKeyInfo)
manage.py license_pubkey --format raw # the 32 key bytes, base64url (43 characters)
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from licensing import tokens


class Command(BaseCommand):
    help = "Print the public key that verifies licence tokens."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=("pem", "raw", "id"), default="pem")

    def handle(self, *args, format: str, **options):
        try:
            public = tokens.load_private_key(settings.LICENSE_SIGNING_KEY).public_key()
        except tokens.SigningKeyError as exc:
            raise CommandError(f"{exc} (generate one with manage.py license_keygen)") from None
        if format == "raw":
            self.stdout.write(tokens.public_key_raw(public))
        elif format == "id":
            self.stdout.write(tokens.key_id(public))
        else:
            self.stdout.write(tokens.public_key_pem(public), ending="")
