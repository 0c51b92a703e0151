"""What a Sage X3 web service answers, as plain values, and how hard a failed call is retried."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.soap.models import SOAP_RETRY

__all__ = ["MESSAGE_TYPES", "SAGE_X3_RETRY", "SageMessage", "SageResult"]

# CAdxMessage.type: 3 = error is seen in real answers; 1 and 2 are the usual X3 message levels
# (information, warning) [NOT VERIFIED in a public source]
MESSAGE_TYPES = {"1": "information", "2": "warning", "3": "error"}

# X3 is called through the landlord ERPs' hardened SOAP client, and retried as they are.
SAGE_X3_RETRY = SOAP_RETRY


@dataclass(frozen=True)
class SageMessage:
    """One `CAdxMessage`: its level code (`type`) and text."""

    type: str
    message: str

    def __str__(self) -> str:
        return f"[{MESSAGE_TYPES.get(self.type, f'type {self.type}')}] {self.message}"


@dataclass(frozen=True)
class SageResult:
    """One `CAdxResultXml`: `status` 1 is success, 0 failure; `result_xml` is the CDATA
    payload (`RESULT` …), None on failure."""

    status: int
    result_xml: str | None
    messages: tuple[SageMessage, ...]

    @property
    def ok(self) -> bool:
        return self.status == 1
