"""manage.py token_create USER [--read-only] [--expires DAYS] [--name TEXT]: an API token, printed once."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from wizard import services
from wizard.services import tokens


class Command(BaseCommand):
    help = "Create an API token for USER and print it once (carpweb_<id>_<secret>); only its hash is kept."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("username")
        parser.add_argument("--read-only", action="store_true", help="the token may only read")
        parser.add_argument("--expires", type=int, metavar="DAYS", help="the token stops working after DAYS days")
        parser.add_argument("--name", default="", help="what the token is for (shown in listings)")

    def handle(self, *args, username: str, read_only: bool, expires: int | None, name: str,  # type: ignore[no-untyped-def]
               **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        try:
            token, text = tokens.token_create(user=user, name=name, read_only=read_only, expires_days=expires)
        except services.ServiceError as e:
            raise CommandError(str(e)) from e
        self.stderr.write(f"token {token.key_id} for {username}"
                          f"{' (read-only)' if read_only else ''}"
                          f"{f', expires {token.expires:%Y-%m-%d %H:%M} UTC' if token.expires else ''}. "
                          "It is shown this once:")
        self.stdout.write(text)
