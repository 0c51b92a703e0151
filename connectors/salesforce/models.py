"""What the Salesforce client is given: how to authenticate, and how hard to retry.

Secrets arrive already resolved (the datafix layer reads `${SF_PASSWORD}` and friends from the
environment); they never appear in `repr`, in messages or in logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from connectors.errors import ConfigError
from connectors.retry import RetryPolicy

__all__ = ["SALESFORCE_RETRY", "AuthMode", "SalesforceAuth"]

AuthMode = Literal["session", "password", "jwt"]

# `login`, `test`, or a My Domain prefix such as `acme.my` (simple-salesforce builds
# https://{domain}.salesforce.com from it)
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*")


@dataclass(frozen=True)
class SalesforceAuth:
    """One of three ways in, chosen by which values are given.

    - `session`: `session_id` + `instance_url` (an access token already obtained; offline
      demos and tests). No login call is made.
    - `password`: `username` + `password` + `security_token` (SOAP login on `domain`).
    - `jwt`: `username` + `consumer_key` + `private_key_file` (OAuth 2.0 JWT bearer flow on
      `domain`, the production choice: no password stored anywhere).

    `domain` is `login` (production), `test` (sandbox) or a My Domain prefix (`acme.my`).
    """

    session_id: str | None = field(default=None, repr=False)
    instance_url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security_token: str | None = field(default=None, repr=False)
    consumer_key: str | None = field(default=None, repr=False)
    private_key_file: str | None = None
    domain: str = "login"

    def __post_init__(self) -> None:
        self.mode  # noqa: B018 - validates the combination at construction time
        if not isinstance(self.domain, str) or not _DOMAIN.fullmatch(self.domain):
            raise ConfigError(
                f"Salesforce domain {self.domain!r} is not valid — use login (production), test"
                " (sandbox) or your My Domain prefix such as acme.my"
            )
        if self.instance_url is not None:
            parsed = urlparse(self.instance_url)
            if parsed.scheme != "https" or not parsed.hostname or parsed.path not in ("", "/"):
                raise ConfigError(
                    f"Salesforce instance_url {self.instance_url!r} is not an https address —"
                    " write it like https://acme.my.salesforce.com"
                )

    @property
    def mode(self) -> AuthMode:
        """Which way in the given values describe; a ConfigError when none is complete."""
        given = {
            name
            for name in (
                "session_id",
                "instance_url",
                "username",
                "password",
                "security_token",
                "consumer_key",
                "private_key_file",
            )
            if getattr(self, name)
        }
        if given == {"session_id", "instance_url"}:
            return "session"
        if given == {"username", "password", "security_token"}:
            return "password"
        if given == {"username", "consumer_key", "private_key_file"}:
            return "jwt"
        listed = ", ".join(sorted(given)) or "nothing"
        raise ConfigError(
            f"Salesforce credentials incomplete or mixed (given: {listed}) — give exactly one of:"
            " session_id + instance_url; username + password + security_token; or username +"
            " consumer_key + private_key_file (JWT)"
        )

    def check_files(self) -> None:
        """The JWT private key file must exist before a login is attempted."""
        if self.private_key_file and not Path(self.private_key_file).is_file():
            raise ConfigError(
                f"Salesforce private key file {self.private_key_file} does not exist — fix the"
                " path (the PEM key whose certificate is on the connected app)"
            )


# How transient faults (5xx, timeouts, dropped connections) are retried within a call unless
# the caller says otherwise. An exhausted API limit and every permanent refusal are never
# retried here.
SALESFORCE_RETRY = RetryPolicy(attempts=5, first_wait=1.0, max_wait=60.0, jitter=1.0)
