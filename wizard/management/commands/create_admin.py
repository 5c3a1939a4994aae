"""Create (or reset) the first admin account: manage.py create_admin USER [--password P | --password-file F]."""

import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first admin account, or reset its password."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("username")
        parser.add_argument("--password", help="default: a random one, printed once")
        parser.add_argument("--password-file", help="read the password from this file (kept out of `ps`)")
        parser.add_argument("--if-missing", action="store_true", help="do nothing when the user exists")

    def handle(self, *args, username: str, password: str | None, password_file: str | None, if_missing: bool,  # type: ignore[no-untyped-def]
               **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user and if_missing:
            self.stdout.write(f"admin account {username!r} exists already")
            return
        if password_file:
            password = Path(password_file).read_text().strip()
        shown = not password_file
        password = password or secrets.token_urlsafe(12)
        user = user or User(username=username)
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        from django.contrib.auth.models import Group

        user.groups.add(Group.objects.get_or_create(name="admin")[0])
        self.stdout.write(f"admin account {username!r} ready" + (f"; password: {password}" if shown else ""))
