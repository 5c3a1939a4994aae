"""Create (or reset) the first admin account: manage.py create_admin USER [--password-file F | --password-stdin].

The password never goes on the command line (where `ps` and shell histories show it): it comes from a file, from
standard input, or is generated and printed once.
"""

import secrets
import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from wizard import services


class Command(BaseCommand):
    help = "Create the first admin account, or reset its password."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("username")
        parser.add_argument("--password-file", help="read the password from this file")
        parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        parser.add_argument("--if-missing", action="store_true", help="do nothing when the user exists")

    def handle(self, *args, username: str, password_file: str | None, password_stdin: bool, if_missing: bool,  # type: ignore[no-untyped-def]
               **options):
        user = get_user_model().objects.filter(username=username).first()
        if user and if_missing:
            self.stdout.write(f"admin account {username!r} exists already")
            return
        password = Path(password_file).read_text().strip() if password_file else \
            sys.stdin.readline().strip() if password_stdin else ""
        if (password_file or password_stdin) and not password:
            raise CommandError("the password given is empty")
        shown = not password
        password = password or secrets.token_urlsafe(12)
        services.admin_account(username=username, password=password)
        self.stdout.write(f"admin account {username!r} ready" + (f"; password: {password}" if shown else ""))
