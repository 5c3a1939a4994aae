"""What a use case says when it refuses: a sentence for the admin."""


class ServiceError(Exception):
    """A use case refused; the message is for the admin."""


class ConcurrentEdit(ServiceError):
    """Two people edited the same object; the second save is refused."""


class RoleRequired(ServiceError):
    """The person's role does not allow this."""
