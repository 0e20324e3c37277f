"""A handler module whose register() fails: the setting it needs is missing."""

import os
from typing import Any

from fleetq_server.handlers import HandlerRegistry, StepContext

MAIL_URL_VARIABLE = "FLEETQ_TEST_MAIL_URL_NEVER_SET"


def register(registry: HandlerRegistry) -> None:
    mail_url = os.environ[MAIL_URL_VARIABLE]

    async def send_mail(args: dict[str, Any], context: StepContext) -> str:
        return mail_url

    registry.add("send_mail", send_mail)
