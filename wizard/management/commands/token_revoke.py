"""manage.py token_revoke ID: the token stops working at once (its next request gets 401)."""

from django.core.management.base import BaseCommand, CommandError

from wizard import services
from wizard.services import tokens


class Command(BaseCommand):
    help = "Revoke the API token with this id (the part after carpweb_, before the next underscore)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("key_id")

    def handle(self, *args, key_id: str, **options):  # type: ignore[no-untyped-def]
        try:
            token = tokens.token_revoke(key_id=key_id)
        except services.ServiceError as e:
            raise CommandError(str(e)) from e
        self.stdout.write(f"token {token.key_id} of {token.user.get_username()} revoked")
