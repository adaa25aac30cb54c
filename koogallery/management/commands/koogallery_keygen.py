"""Generate the RSA key pair that protects applicationSync's `clientSecret` (spec §3.6).

The seller pastes the public key into the app credential (应用凭证) form of the seller console,
which wants the base64 body without BEGIN/END lines; KooGallery then encrypts each tenant's
OAuth client secret with it (RSA-OAEP) and we decrypt with the private key named by
KOOGALLERY_RSA_PRIVATE_KEY (§2.2). The private key is written to a file only, readable by its
owner alone, and never printed.
"""

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from koogallery.protocol.crypto import MIN_RSA_BITS, CryptoError, generate_rsa_keypair


class Command(BaseCommand):
    help = (
        "Generate an RSA key pair for KooGallery's clientSecret encryption: write the private "
        "key (PKCS#8 PEM, mode 600) to --out and print the public key for the seller console."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--out", required=True, help="file to write the private key to (PKCS#8 PEM)"
        )
        parser.add_argument(
            "--bits",
            type=int,
            default=MIN_RSA_BITS,
            help=f"key size in bits, at least {MIN_RSA_BITS} (Huawei's minimum); default "
            f"{MIN_RSA_BITS}",
        )
        parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    def handle(self, *args, out: str, bits: int, force: bool, **options):
        path = Path(out).expanduser().resolve()
        if path.exists() and not force:
            raise CommandError(
                f"{path} exists; refusing to overwrite a private key (use --force to replace it: "
                "secrets encrypted for the old public key can then no longer be decrypted)"
            )
        if not path.parent.is_dir():
            raise CommandError(f"directory {path.parent} does not exist")
        try:
            private_pem, public_body = generate_rsa_keypair(bits)
        except CryptoError as exc:
            raise CommandError(str(exc)) from None

        self._write_private(path, private_pem, force=force)

        self.stdout.write(f"Private key ({bits}-bit RSA, PKCS#8 PEM) written to {path} (mode 600).")
        self.stdout.write("")
        self.stdout.write(
            "Public key for the seller console (卖家中心 → app credential / 应用凭证), "
            "paste as one line:"
        )
        self.stdout.write("")
        self.stdout.write(public_body)
        self.stdout.write("")
        self.stdout.write("Then point the server at the private key, e.g. in the environment:")
        self.stdout.write(f"    KOOGALLERY_RSA_PRIVATE_KEY={path}")
        self.stdout.write(
            "(the variable also accepts the PEM text itself, starting with -----BEGIN).\n"
            "Keep the private key out of the repository and back it up: without it, stored "
            "app credentials must be re-sent by KooGallery."
        )

    @staticmethod
    def _write_private(path: Path, pem: str, *, force: bool) -> None:
        # Created with mode 600 from the start, so the key is never readable by others even
        # for an instant; O_EXCL closes the race with another process creating the file.
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise CommandError(f"{path} exists; refusing to overwrite (use --force)") from None
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(pem)
        os.chmod(path, 0o600)  # an existing file replaced with --force keeps its old mode
