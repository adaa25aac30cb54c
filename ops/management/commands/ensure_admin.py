"""Create the first operator account if none exists, and say how to log in.

The password comes from DJANGO_SUPERUSER_PASSWORD, else it is generated once and kept in
`.local/admin-password` (git-ignored), so every start of the embedded default prints the same
credentials and none is ever committed.
"""

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin superuser if missing and print how to log in."

    def add_arguments(self, parser):
        parser.add_argument(
            "--username", default=os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        )
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/")

    def handle(self, *args, username: str, url: str, **options):
        password_file = settings.BASE_DIR / ".local" / "admin-password"
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        if not password and password_file.exists():
            password = password_file.read_text().strip()
        if not password:
            password = secrets.token_urlsafe(12)
            password_file.parent.mkdir(exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            User.objects.create_superuser(username=username, email="", password=password)
        elif not user.check_password(password):
            self.stdout.write(f"Admin user {username!r} exists with a password set earlier.")
            return
        self.stdout.write(
            self.style.SUCCESS(f"Admin: {url}  user: {username}  password: {password}")
            + f"\n(the password is kept in {password_file.relative_to(settings.BASE_DIR)})"
        )
