"""Generate the Ed25519 key pair that signs licence tokens (spec §2.2 `LICENSE_SIGNING_KEY`).

    manage.py license_keygen --out /etc/merchant/license-signing.pem
    manage.py license_keygen > license-signing.pem     # private key on stdout, the rest on stderr

The private key stays on the merchant server (file mode 0600); the public key goes into the
merchant's software, which verifies licences offline.
"""

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from licensing import tokens


class Command(BaseCommand):
    help = "Generate an Ed25519 licence signing key pair (private PEM + public key)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--out", help="write the private key here (mode 0600) instead of to stdout"
        )
        parser.add_argument("--force", action="store_true", help="overwrite an existing --out")

    def handle(self, *args, out: str | None, force: bool, **options):
        key = tokens.generate_private_key()
        private_pem = tokens.private_key_pem(key)
        public = key.public_key()
        summary = (
            f"key id: {tokens.key_id(public)}\n"
            f"public key (raw, base64url): {tokens.public_key_raw(public)}\n"
            f"public key (PEM):\n{tokens.public_key_pem(public)}"
        )
        if out is None:
            self.stdout.write(private_pem, ending="")
            self.stderr.write(
                "Private key written to stdout: keep it secret, set LICENSE_SIGNING_KEY to it "
                f"(PEM text or a file path).\n{summary}",
                ending="",
            )
            return
        path = Path(out)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise CommandError(f"{path} exists; use --force to replace the key") from None
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(private_pem)
        os.chmod(path, 0o600)  # O_TRUNC keeps an existing file's mode
        self.stdout.write(
            f"Private key written to {path} (mode 0600): set LICENSE_SIGNING_KEY={path.resolve()}\n"
            f"{summary}",
            ending="",
        )
