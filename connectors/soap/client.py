"""Read a landlord ERP's SOAP operation into a text `RawTable`, through a hardened zeep client.

Hardening (RELIABILITY.md §3.3), on every client `make_client` builds:

- `zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True, strict=True,
  xml_huge_tree=False)`: a WSDL, schema or response carrying a `<!DOCTYPE>` is refused before
  anything in it is used, so no entity is ever expanded (billion laughs) and no external
  entity or DTD is ever fetched (XXE: local files, SSRF).
- a `GuardedTransport`: the WSDL named in the datafix is the only document ever loaded. Any
  import it makes of another schema or WSDL (over http(s), `file://` or a local path) is
  refused, which `forbid_external` alone does not do for local files. The one exception is
  the SOAP-encoding schema (`http://schemas.xmlsoap.org/soap/encoding/`) that RPC/encoded
  services such as Sage X3 reference: with `soap_encoding=True` it is served from a copy
  bundled here, never fetched. zeep checks `forbid_external` before asking the transport, so
  with `soap_encoding=True` zeep's own flag is off and the transport alone enforces the rule.
- timeouts: `timeout` for loading the WSDL, `operation_timeout` for every call (zeep's
  default is no timeout at all).

Failures are sorted by what to do next (`connectors.errors`):

- `ConfigError` (one line): the WSDL file is missing, its URL unreachable or answered 4xx,
  it is not a WSDL; arguments the WSDL does not accept; a `records_path` not in the response.
- `RetriableError`, retried here first: a timeout, a refused, reset or cut connection (also
  in the middle of the answer), HTTP 5xx or 429 without a SOAP fault, a SOAP fault whose code
  (or SOAP 1.2 subcode) is listed as transient (`retriable_faults`: the datafix's
  `transient_faults`, `RETRIABLE_FAULT_CODES` = `Server.Busy`, `Server.Unavailable`,
  `Server.Timeout` by default).
- `PermanentError`: any other SOAP fault (`Client.*`, an unlisted `Server.*` …: SOAP 1.1 sends
  every fault with HTTP 500, so the fault's code decides, not the status), HTTP 4xx, malformed
  XML, a DTD or entity declarations in an answer or in the WSDL; the paging rules broken
  (records read ≠ the announced total …, `connectors.soap.paging`).

The SOAP sink (`connectors.soap.push`) sorts its failures with the same `classify_error`.

Retriable failures are retried inside the client (`connectors.retry.with_retries`: exponential
backoff with jitter, `SOAP_RETRY` unless told otherwise), per call, so a fault on page 7
repeats page 7 only. Messages name the WSDL (credentials masked) and the operation, and never
quote a response body.

Values become text as in the other readers (`connectors.rawtable.column_text`): Decimal
(zeep's `xsd:decimal`) digits as sent, dates ISO, date-times `2026-03-01 14:30:00+00:00`,
booleans `true`/`false`, absent values `""`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import zeep
import zeep.exceptions as zeep_errors
from lxml import etree
from zeep.helpers import serialize_object
from zeep.proxy import ServiceProxy
from zeep.xsd import ComplexType

from connectors.errors import ConfigError, ConnectorError, PermanentError, RetriableError
from connectors.lazy import pd
from connectors.rawtable import (
    RawTable,
    column_text,
    frame_fingerprint,
    key_lineage,
    streamed_pages,
)
from connectors.retry import RetryPolicy, with_retries
from connectors.secrets import scrub
from connectors.soap.models import RETRIABLE_FAULT_CODES, SOAP_RETRY, SoapPaging
from connectors.soap.paging import Pager
from connectors.soap.wsdl import (
    SettingProblems,
    below,
    did_you_mean,
    element_at,
    input_elements,
    operation_names,
    output_elements,
    path_problem,
    required_paths,
)

__all__ = [
    "SOAP_ENCODING_NAMESPACE",
    "GuardedTransport",
    "call_operation",
    "check_key",
    "check_source",
    "classify_error",
    "complex_type_of",
    "fault_code",
    "flatten_record",
    "hardened_settings",
    "has_doctype",
    "make_client",
    "masked_location",
    "nest_arguments",
    "read_soap",
    "record_columns",
    "response_data",
    "response_type_of",
    "service_for",
    "since_value",
    "text_frame",
    "transient_fault",
    "value_at_path",
]

SOAP_ENCODING_NAMESPACE = "http://schemas.xmlsoap.org/soap/encoding/"

# The parts of the SOAP 1.1 encoding schema zeep needs to understand `soapenc:Array`
# restrictions and `soapenc:Struct` (see the file), served to zeep in place of the network copy.
_SOAP_ENCODING_SCHEMA = Path(__file__).with_name("soap_encoding.xsd")

_HOW_TO_FIX_WSDL = "check `wsdl` in the datafix (a file path or an http(s) URL)"


def has_doctype(content: bytes | str) -> bool:
    """True when the document declares a DTD (`<!DOCTYPE` before its root element).

    Checked on the raw bytes before any parser runs: libxml2 answers an entity bomb with a
    generic "amplification" syntax error, and this lets the message say what really happened.
    Only the prolog is looked at (the XML declaration, comments, processing instructions and
    blanks that may come first), so a `<!DOCTYPE` quoted inside the document is no DTD.
    """
    if isinstance(content, str):
        content = content.encode("utf-8", "replace")
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        content = content.decode("utf-16", "replace").encode("utf-8", "replace")
    content = content.removeprefix(b"\xef\xbb\xbf")
    position = 0
    while True:
        while position < len(content) and content[position] in b" \t\r\n":
            position += 1
        for opening, closing in ((b"<?", b"?>"), (b"<!--", b"-->")):
            if content.startswith(opening, position):
                end = content.find(closing, position + len(opening))
                if end < 0:
                    return False
                position = end + len(closing)
                break
        else:
            return content.startswith(b"<!DOCTYPE", position)


# --------------------------------------------------------------------------------------------
# Locations


def masked_location(location: str) -> str:
    """A WSDL path or URL fit for a message: a password in the URL (user info or query)
    becomes `***`."""
    return scrub(location)


def _is_url(location: str) -> bool:
    return urlsplit(location).scheme.lower() in ("http", "https", "file")


def _wsdl_location(wsdl: str) -> str:
    """The location zeep will load (an absolute path for a file), or a one-line ConfigError."""
    if not wsdl or not wsdl.strip():
        raise ConfigError(f"no WSDL given — {_HOW_TO_FIX_WSDL}")
    scheme = urlsplit(wsdl).scheme.lower()
    if scheme in ("http", "https"):
        return wsdl
    if scheme == "file":
        path = Path(urlsplit(wsdl).path)
    elif scheme and len(scheme) > 1:  # `c:` is a Windows drive, not a scheme
        raise ConfigError(
            f"WSDL location {masked_location(wsdl)} is neither a file nor an"
            f" http(s) URL — {_HOW_TO_FIX_WSDL}"
        )
    else:
        path = Path(wsdl).expanduser()
    if not path.is_file():
        raise ConfigError(f"WSDL not found: {path} — {_HOW_TO_FIX_WSDL}")
    return wsdl if scheme == "file" else os.path.abspath(path)


# --------------------------------------------------------------------------------------------
# The hardened client


def hardened_settings(*, soap_encoding: bool = False) -> zeep.Settings:
    """zeep settings for an untrusted peer (see the module docstring for `soap_encoding`)."""
    return zeep.Settings(
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=not soap_encoding,
        strict=True,
        xml_huge_tree=False,
    )


class GuardedTransport(zeep.Transport):
    """A zeep transport that loads the entry WSDL and no other document.

    Also remembers the HTTP status of the last operation call (`last_status`), which zeep
    does not keep on the faults it raises.
    """

    def __init__(
        self,
        entry: str,
        *,
        timeout: float,
        operation_timeout: float,
        session: requests.Session | None = None,
        soap_encoding: bool = False,
    ) -> None:
        super().__init__(timeout=timeout, operation_timeout=operation_timeout, session=session)
        self.entry = entry
        self.soap_encoding = soap_encoding
        self.last_status: int | None = None

    def load(self, url: str) -> bytes:
        if self.soap_encoding and url.rstrip("/") == SOAP_ENCODING_NAMESPACE.rstrip("/"):
            return _SOAP_ENCODING_SCHEMA.read_bytes()
        if url == self.entry or (not _is_url(url) and os.path.abspath(url) == self.entry):
            content = super().load(url)
            if has_doctype(content):
                raise zeep_errors.DTDForbidden("", None, None)
            return content
        raise zeep_errors.ExternalReferenceForbidden(url)

    def post(self, address: str, message: Any, headers: Any) -> requests.Response:
        self.last_status = None
        response = super().post(address, message, headers)
        self.last_status = response.status_code
        if has_doctype(response.content[:65536]):
            raise zeep_errors.DTDForbidden("", None, None)
        return response


def _refusal(
    error: BaseException, refused: str, *, dtd_fix: str, reference: str, reference_fix: str
) -> PermanentError | None:
    """The error for a document the hardened parser refused (a DTD, entity declarations, a
    reference to another document), worded `{refused}: it …`; None for any other error."""
    if isinstance(error, zeep_errors.DTDForbidden | zeep_errors.EntitiesForbidden):
        return PermanentError(
            f"{refused}: it carries a DTD or entity declarations, which the hub never reads"
            f" (XXE, billion laughs) — {dtd_fix}"
        )
    if isinstance(error, zeep_errors.ExternalReferenceForbidden):
        return PermanentError(
            f"{refused}: it {reference} ({error.url}), which the hub never fetches —"
            f" {reference_fix}"
        )
    return None


def _wsdl_error(error: BaseException, wsdl: str, timeout: float) -> ConnectorError:
    where = masked_location(wsdl)
    if isinstance(error, ConnectorError):
        return error
    if isinstance(error, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return ConfigError(f"WSDL not found: {where} — {_HOW_TO_FIX_WSDL}")
    if isinstance(error, requests.Timeout):
        return RetriableError(
            f"WSDL {where}: no answer within {timeout:g} s — the service may be down or slow;"
            " the run will be retried"
        )
    if isinstance(error, requests.ConnectionError):
        return ConfigError(
            f"WSDL unreachable: {where} (no connection) — {_HOW_TO_FIX_WSDL}, and that the"
            " service is up"
        )
    if isinstance(error, requests.HTTPError) and error.response is not None:
        status = error.response.status_code
        if status >= 500 or status == 429:
            return RetriableError(
                f"WSDL {where}: HTTP {status} — the service is failing or busy; the run will be"
                " retried"
            )
        return ConfigError(f"WSDL {where}: HTTP {status} — {_HOW_TO_FIX_WSDL}")
    refused = _refusal(
        error,
        f"WSDL {where} refused",
        dtd_fix="ask the landlord's IT for a WSDL without <!DOCTYPE>",
        reference="imports another document",
        reference_fix="use a self-contained WSDL (schemas inlined), saved as a file if need be",
    )
    if refused is not None:
        return refused
    if isinstance(error, zeep_errors.XMLSyntaxError | etree.XMLSyntaxError):
        return ConfigError(
            f"WSDL {where} is not valid XML — {_HOW_TO_FIX_WSDL}, pointing at the WSDL itself"
            " (often the service URL followed by ?wsdl)"
        )
    if isinstance(error, zeep_errors.Error):
        detail = " ".join(str(error.message or error).split())[:200]
        return ConfigError(f"WSDL {where} cannot be used ({detail}) — {_HOW_TO_FIX_WSDL}")
    raise error


def make_client(
    wsdl: str,
    *,
    timeout: float = 30,
    operation_timeout: float = 60,
    session: requests.Session | None = None,
    soap_encoding: bool = False,
    retry: RetryPolicy | None = None,
) -> zeep.Client:
    """A zeep client for `wsdl` (a file path, `file://` or http(s) URL), hardened.

    `soap_encoding=True` for RPC/encoded services (Sage X3): see the module docstring.
    Raises ConfigError (missing file, unreachable URL, 4xx, not a WSDL), RetriableError (WSDL
    timeout, 5xx) or PermanentError (a DTD, entities or an import in the WSDL). With `retry`,
    a `RetriableError` is retried under that policy first.
    """
    if retry is not None:
        return with_retries(
            lambda: make_client(
                wsdl,
                timeout=timeout,
                operation_timeout=operation_timeout,
                session=session,
                soap_encoding=soap_encoding,
            ),
            retry,
        )
    location = _wsdl_location(wsdl)
    transport = GuardedTransport(
        location,
        timeout=timeout,
        operation_timeout=operation_timeout,
        session=session,
        soap_encoding=soap_encoding,
    )
    try:
        return zeep.Client(
            location, transport=transport, settings=hardened_settings(soap_encoding=soap_encoding)
        )
    except Exception as error:
        raise _wsdl_error(error, wsdl, timeout) from None


def service_for(client: zeep.Client, address: str | None = None) -> ServiceProxy:
    """The client's first service port, or its binding at `address` when given (a WSDL file's
    `soap:address` rarely names the right host)."""
    if address is None:
        return client.service
    for service in client.wsdl.services.values():
        for port in service.ports.values():
            return client.create_service(port.binding.name.text, address)
    raise ConfigError("the WSDL declares no service port — use a WSDL with a <wsdl:service>")


# --------------------------------------------------------------------------------------------
# Calling an operation


def fault_code(code: object) -> str:
    """`soap:Server.Busy` → `Server.Busy` (the code without its namespace prefix)."""
    text = str(getattr(code, "localname", code) or "")
    return text.rsplit(":", 1)[-1].strip()


def transient_fault(fault: zeep_errors.Fault, transient_faults: Collection[str]) -> str:
    """The fault's code when it (or a SOAP 1.2 subcode) is one of `transient_faults`, else "".

    Codes are compared without their namespace prefix (`soap:Server.Busy` is `Server.Busy`).
    """
    wanted = {fault_code(code) for code in transient_faults}
    for code in (fault.code, *(getattr(fault, "subcodes", None) or ())):
        if fault_code(code) in wanted:
            return fault_code(code)
    return ""


def classify_error(
    error: BaseException,
    where: str,
    *,
    status: int | None = None,
    retriable_faults: Collection[str] = RETRIABLE_FAULT_CODES,
    operation_timeout: float | None = None,
) -> ConnectorError:
    """The connector error for a failed call of `where` (`<wsdl> <operation>`).

    `status` is the HTTP status of the answer when one came. Unknown errors are re-raised.
    """
    if isinstance(error, ConnectorError):
        return error
    if isinstance(error, requests.Timeout):
        limit = f" within {operation_timeout:g} s" if operation_timeout else ""
        return RetriableError(
            f"{where}: no answer{limit} (timeout) — the service is slow or down; retried"
        )
    if isinstance(error, requests.ConnectionError | ConnectionError):
        return RetriableError(
            f"{where}: connection failed or was cut — the service may be down; retried"
        )
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return RetriableError(
            f"{where}: the connection was cut in the middle of the answer — retried"
        )
    if isinstance(error, zeep_errors.Fault):
        code = fault_code(error.code)
        message = " ".join(str(error.message or "").split())[:300]
        transient = transient_fault(error, retriable_faults)
        if transient:
            return RetriableError(
                f"{where}: the service is busy (SOAP fault {transient}: {message}, listed as"
                " transient) — retried"
            )
        if not code:  # an XML answer with an HTTP error status and no SOAP fault in it
            if status is not None and (status >= 500 or status == 429):
                return RetriableError(f"{where}: HTTP {status} without a SOAP fault — retried")
            return PermanentError(
                f"{where}: HTTP {status or '?'} without a SOAP fault — check the endpoint"
                " address and the arguments"
            )
        hint = (
            "fix the call's arguments in the datafix"
            if code.startswith("Client")
            else "the service refused the call: check what the fault names, or ask the"
            " service's administrators"
        )
        return PermanentError(f"{where}: SOAP fault {code}: {message} — {hint}")
    refused = _refusal(
        error,
        f"{where}: refused the answer",
        dtd_fix="ask the landlord's IT to remove the <!DOCTYPE> from the service's answers",
        reference="refers to an external document",
        reference_fix="ask the landlord's IT",
    )
    if refused is not None:
        return refused
    if isinstance(error, zeep_errors.TransportError):
        code = error.status_code or status or 0
        if code >= 500 or code == 429:
            return RetriableError(f"{where}: HTTP {code} — the service is failing or busy; retried")
        if code in (401, 403):
            return PermanentError(
                f"{where}: HTTP {code}, access refused — check the user and the password"
                " variable of this source"
            )
        if 200 <= code < 300:
            return PermanentError(
                f"{where}: the answer is malformed XML — the service is broken; ask the"
                " landlord's IT (the hub reads nothing from it)"
            )
        return PermanentError(
            f"{where}: HTTP {code} — check the endpoint address and the arguments"
        )
    if isinstance(error, zeep_errors.XMLSyntaxError | etree.XMLSyntaxError):
        return PermanentError(
            f"{where}: the answer is malformed XML or not a SOAP envelope — ask the landlord's"
            " IT (the hub reads nothing from it)"
        )
    if isinstance(error, zeep_errors.ValidationError | TypeError):
        detail = " ".join(str(error).split())[:300]
        return ConfigError(
            f"{where}: the arguments do not fit the WSDL ({detail}) — fix `arguments` (or the"
            " paging / since argument names) in the datafix"
        )
    if isinstance(error, zeep_errors.XMLParseError | zeep_errors.UnexpectedElementError):
        detail = " ".join(str(error).split())[:300]
        return PermanentError(
            f"{where}: the answer does not match the WSDL ({detail}) — the service and its"
            " WSDL disagree; ask the landlord's IT"
        )
    raise error


def call_operation(
    service: ServiceProxy,
    operation: str,
    arguments: Mapping[str, Any],
    *,
    where: str,
    retry: RetryPolicy | None = None,
    retriable_faults: Collection[str] = RETRIABLE_FAULT_CODES,
) -> Any:
    """Call `operation` with `arguments`, retrying transient faults; zeep's answer.

    Errors are classified as in the module docstring; `where` opens every message.
    """
    method = _operation(service, operation, where)
    transport = getattr(service._client, "transport", None)

    def once() -> Any:
        try:
            return method(**arguments)
        except Exception as error:
            raise classify_error(
                error,
                where,
                status=getattr(transport, "last_status", None),
                retriable_faults=retriable_faults,
                operation_timeout=getattr(transport, "operation_timeout", None),
            ) from None

    return with_retries(once, retry or SOAP_RETRY)


def _operation(service: ServiceProxy, operation: str, where: str) -> Callable[..., Any]:
    operations = sorted(service._binding._operations)
    if operation not in operations:
        close = difflib.get_close_matches(operation, operations, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else "fix `operation` in the datafix"
        raise ConfigError(
            f"{where}: the WSDL has no operation `{operation}` (there: {', '.join(operations)})"
            f" — {hint}"
        )
    return getattr(service, operation)


# --------------------------------------------------------------------------------------------
# From zeep's answer to rows


def complex_type_of(xsd_type: object) -> ComplexType | None:
    """`xsd_type` when it is a complex type with elements or attributes, else None."""
    if isinstance(xsd_type, ComplexType) and (xsd_type.elements or xsd_type.attributes):
        return xsd_type
    return None


def _fields(xsd_type: ComplexType) -> list[tuple[str, Any]]:
    return list(xsd_type.elements) + list(xsd_type.attributes)


def response_type_of(service: ServiceProxy, operation: str) -> ComplexType | None:
    """The complex type of `operation`'s response element in the WSDL, or None."""
    output = service._binding._operations[operation].output
    body = getattr(output, "body", None)
    return complex_type_of(getattr(body, "type", None))


def response_data(result: Any, response_type: ComplexType | None) -> Any:
    """zeep's answer as plain dicts and lists, rooted at the response element.

    zeep hands back the response element's only child instead of the element (twice when that
    child is itself a one-child element); the missing levels are put back so `records_path`
    always reads from the response element, as the WSDL shows it.
    """
    if result is None:
        return None  # zeep's answer for an empty response element: no records
    data = serialize_object(result, dict)
    if response_type is None:
        return data
    fields = _fields(response_type)
    if len(fields) != 1:
        return data
    name, element = fields[0]
    inner = complex_type_of(getattr(element, "type", None))
    if (
        inner is not None
        and getattr(element, "max_occurs", 1) == 1
        and len(inner.elements) == 1
        and not inner.attributes
    ):
        return {name: {inner.elements[0][0]: data}}
    return {name: data}


def _child_type(xsd_type: ComplexType | None, name: str) -> tuple[Any, ComplexType | None]:
    if xsd_type is None:
        return None, None
    for field_name, element in _fields(xsd_type):
        if field_name == name:
            return element, complex_type_of(getattr(element, "type", None))
    return None, None


def value_at_path(data: Any, path: str, where: str, what: str) -> Any:
    """The value at a dotted `path` in a SOAP answer as plain data.

    `None` below an empty element; a missing segment is a `ConfigError` naming `what`.
    """
    current = data
    walked: list[str] = []
    for segment in path.split("."):
        if current is None:
            return None  # an empty element (`<tenants/>`): zeep gives None, nothing below
        if not isinstance(current, Mapping) or segment not in current:
            there = ", ".join(current) if isinstance(current, Mapping) else "no fields"
            place = ".".join(walked) or "the response"
            raise ConfigError(
                f"{where}: `{segment}` of {what} `{path}` is not in {place} (there: {there})"
                f" — fix {what} in the datafix"
            )
        current = current[segment]
        walked.append(segment)
    return current


def _schema_path(
    response_type: ComplexType | None, path: str, where: str, what: str
) -> ComplexType | None:
    """The complex type `path` leads to in the WSDL (None: a simple value, or a part the WSDL
    leaves open); a ConfigError, before any call, when the WSDL has no such field."""
    found = _walk_type(response_type, path, where, (what, what, "the response"))
    return None if found is None else found[1]


def _walk_type(
    start: ComplexType | None, path: str, where: str, naming: tuple[str, str, str]
) -> tuple[Any, ComplexType | None] | None:
    """The element `path` (dotted) names from the type `start`, and its complex type; None
    when the walk meets a part the WSDL leaves open. A field the WSDL does not have is a
    ConfigError; `naming` is (what the path is, what to fix, the start's name in the message)."""
    what, fix, outside = naming
    current = start
    element: Any = None
    walked: list[str] = []
    for segment in path.split("."):
        if current is None:
            return None
        element, nested = _child_type(current, segment)
        if element is None:
            there = ", ".join(name for name, _ in _fields(current))
            place = ".".join(walked) or outside
            raise ConfigError(
                f"{where}: `{segment}` of {what} `{path}` is not in {place} (there: {there})"
                f" — fix {fix} in the datafix"
            )
        current = nested
        walked.append(segment)
    return element, current


def _flatten_typed(value: Any, xsd_type: ComplexType, prefix: str, row: dict[str, Any]) -> None:
    mapping = value if isinstance(value, Mapping) else {}
    for name, element in _fields(xsd_type):
        column = f"{prefix}{name}"
        child = mapping.get(name)
        repeated = getattr(element, "max_occurs", 1) != 1
        nested = complex_type_of(getattr(element, "type", None))
        if nested is not None and not repeated and not isinstance(child, list):
            _flatten_typed(child, nested, f"{column}.", row)
        else:
            row[column] = child if child not in ([], {}) else None


def _flatten_untyped(value: Any, prefix: str, row: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for name, child in value.items():
            _flatten_untyped(child, f"{prefix}{name}.", row)
    else:
        row[prefix[:-1] or "value"] = value


def flatten_record(record: Any, record_type: ComplexType | None) -> dict[str, Any]:
    """One record as `{column: value}`: nested fields as `parent.child`, in the WSDL's order.

    With the record's type known, every field the WSDL declares is a column (absent: None),
    so the columns do not depend on the data; a repeated field stays one cell (JSON text).
    """
    row: dict[str, Any] = {}
    if record_type is not None:
        _flatten_typed(record, record_type, "", row)
    else:
        _flatten_untyped(record, "", row)
    return row


def _as_records(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def text_frame(
    rows: Sequence[Mapping[str, Any]], *, columns: Iterable[str] = ()
) -> tuple[pd.DataFrame, str]:
    """Flat rows as a frame of text (values converted column by column), and its fingerprint.

    `columns` come first in that order; any other column found in the rows follows, in order
    of first appearance. The fingerprint hashes the labels and every text value in order.
    """
    labels = list(dict.fromkeys([*columns, *(name for row in rows for name in row)]))
    frame = pd.DataFrame(
        {label: column_text([row.get(label) for row in rows]) for label in labels},
        index=pd.RangeIndex(len(rows)),
    )
    return frame, frame_fingerprint(frame)


def check_key(key: Sequence[str], columns: Sequence[str], where: str) -> None:
    for name in key:
        if name not in columns:
            close = difflib.get_close_matches(name, list(columns), n=1, cutoff=0.6)
            hint = f"did you mean `{close[0]}`?" if close else "fix `key`"
            raise ConfigError(
                f"{where}: key column `{name}` is not among the columns"
                f" ({', '.join(columns)}) — {hint}"
            )


def nest_arguments(arguments: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Dotted argument names as nested elements: `{"page.numero": 2, "page.taille": 100}` →
    `{"page": {"numero": 2, "taille": 100}}` (a wrapped operation taking one `page` element).

    A name both given a value and used as a parent (`page` and `page.numero`) is a ConfigError.
    """
    nested: dict[str, Any] = {}
    for name, value in arguments.items():
        *parents, last = name.split(".")
        level = nested
        for depth, part in enumerate(parents):
            child = level.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"{where}: argument `{'.'.join(parents[: depth + 1])}` has a value and"
                    f" also fields (`{name}`) — keep one of them in the datafix"
                )
            level = child
        if isinstance(level.get(last), dict):
            raise ConfigError(
                f"{where}: argument `{name}` has a value and also fields — keep one of them in"
                " the datafix"
            )
        level[last] = value
    return nested


def _flatten_target(
    record_type: ComplexType | None, flatten: str, where: str
) -> ComplexType | None:
    """The type of the repeated element `flatten` (a path inside the record) after checking
    it is one; None when the WSDL leaves it open."""
    found = _walk_type(record_type, flatten, where, ("flatten", "`flatten`", "the record"))
    if found is None:
        return None
    element, current = found
    if getattr(element, "max_occurs", 1) == 1:
        inner = [name for name, child in _fields(current) if getattr(child, "max_occurs", 1) != 1]
        hint = f"did you mean `{flatten}.{inner[0]}`?" if current and inner else "fix `flatten`"
        raise ConfigError(
            f"{where}: flatten `{flatten}` is not a repeated element of the record — {hint}"
        )
    return current


def record_columns(
    record_type: ComplexType | None,
    flatten: str | None = None,
    item_type: ComplexType | None = None,
) -> list[str]:
    """The columns a record of `record_type` gives, in the WSDL's order (none when the WSDL
    leaves the record open); with `flatten`, that repeated element's column is replaced by its
    fields, `flatten.<field>` (`lignes.ligne.libelle`)."""
    if record_type is None:
        return []
    columns = list(flatten_record({}, record_type))
    if flatten is None:
        return columns
    inner = (
        [f"{flatten}.{name}" for name in flatten_record({}, item_type)]
        if item_type is not None
        else []
    )
    if flatten in columns:
        at = columns.index(flatten)
        return [*columns[:at], *inner, *columns[at + 1 :]]
    return [*columns, *inner]


def _flattened_rows(
    record: Any,
    row: dict[str, Any],
    flatten: str,
    item_type: ComplexType | None,
) -> list[tuple[dict[str, Any], int]]:
    """One row per occurrence of the repeated element `flatten` in `record`, carrying the
    record's fields, with its 1-based position; none when the record has no occurrence."""
    parent = {name: value for name, value in row.items() if name != flatten}
    value = record
    for segment in flatten.split("."):
        value = value.get(segment) if isinstance(value, Mapping) else None
    items = _as_records(value)
    rows = []
    for position, item in enumerate(items, start=1):
        fields = flatten_record(item, item_type)
        rows.append(({**parent, **{f"{flatten}.{k}": v for k, v in fields.items()}}, position))
    return rows


def _paging_paths(paging: SoapPaging | None) -> dict[str, str]:
    """The answer paths a pull reads besides its records: `{setting name: path}`."""
    if paging is None:
        return {}
    paths = {"total_path": paging.total_path, "has_more_path": paging.has_more_path}
    if paging.kind == "continuation_token":
        paths["token_path"] = paging.token_path
    return {what: path for what, path in paths.items() if path}


def since_value(client: zeep.Client, operation: str, argument: str, value: str) -> Any:
    """The watermark `value` as the `argument` of `operation` takes it, from the WSDL's type.

    A watermark is kept as text, the way the pulled column gave it: a `dateTime` the SOAP
    client parsed reads `2025-07-19 16:59:24+00:00`. An `xsd:dateTime` argument gets it as a
    date-time (zeep writes `2025-07-19T16:59:24Z`), an `xsd:date` one as a date; any other
    type, or text that is no date, is sent as it is.
    """
    import datetime as dt

    element = element_at(input_elements(client, operation), argument)
    kind = "" if element is None else element.type_name
    if kind not in ("dateTime", "date"):
        return value
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment if kind == "dateTime" else moment.date()


def read_soap(
    wsdl: str,
    *,
    operation: str,
    arguments: Mapping[str, Any] | None = None,
    records_path: str,
    paging: SoapPaging | None = None,
    since: tuple[str, str] | None = None,
    key: Sequence[str] = (),
    flatten: str | None = None,
    timeout: float = 30,
    operation_timeout: float = 60,
    max_pages: int = 10_000,
    address: str | None = None,
    retry: RetryPolicy | None = None,
    retriable_faults: Collection[str] = RETRIABLE_FAULT_CODES,
    session: requests.Session | None = None,
    stream: bool = False,
) -> RawTable:
    """Call `operation` (page after page) and return its records as a text RawTable.

    Args:
        wsdl: the WSDL, a file path or an http(s) URL.
        operation: the operation to call.
        records_path: dotted path from the response element to the repeated record element,
            e.g. `ledgerEntries.entry`. Each record is one row; nested fields become
            `parent.child` columns.
        arguments: fixed arguments of every call; a dotted name fills a nested element
            (`page.taille`), as do dotted paging and `since` argument names.
        paging: how the operation pages (`SoapPaging`); None for a single call. The pages
            are walked by `connectors.soap.paging.Pager`: the end comes from the total, the
            has-more flag, the next token or an empty page (never a short page alone), a server
            cap on the page size is followed, and records read ≠ the announced total raises
            PermanentError: nothing is returned unless the pull is complete.
        since: `(argument name, value)`: the incremental lower bound, sent as that argument
            (e.g. `("modifiedSince", "2026-03-01T00:00:00+01:00")`).
        key: columns naming a record for lineage (`ListTenants:tenantRef=T1`); without it a
            row is named `ListTenants:page 2 row 7`.
        flatten: a repeated element inside each record (`lignes.ligne`): one row per
            occurrence instead of one per record, carrying the record's fields and the
            occurrence's as `lignes.ligne.<field>` columns; a record without any occurrence
            gives no row. The lineage adds the occurrence's position to the record's
            (`ListerBonsDeTravaux:numeroBon=BT-1/ligne=2`); paging and totals still count
            records.
        timeout / operation_timeout: seconds for loading the WSDL / for each call.
        max_pages: a safety stop: more pages than this is an error, not a silent cut.
        address: the endpoint to call instead of the WSDL's `soap:address`.
        retry: how transient faults are retried (`SOAP_RETRY` by default).
        retriable_faults: SOAP fault codes that mean "try again later" (`transient_faults`).
        session: a requests session (TLS settings, authentication).
        stream: when the WSDL describes the record (its columns known before any call),
            return a table streamed from the service (`RawTable.peer_stream`): the pages are
            called as its chunks are read, one page held at a time, and a fault or a short
            total on a later page fails the stream; its fingerprint (`StreamEnd`) is a whole
            read's.
    """
    origin = f"{masked_location(wsdl)} {operation}"
    if max_pages < 1:
        raise ConfigError(f"{origin}: max_pages must be at least 1")
    policy = retry or SOAP_RETRY
    client = make_client(
        wsdl, timeout=timeout, operation_timeout=operation_timeout, session=session, retry=policy
    )
    service = service_for(client, address)
    _operation(service, operation, origin)
    response_type = response_type_of(service, operation)
    record_type = _schema_path(response_type, records_path, origin, "records_path")
    item_type = _flatten_target(record_type, flatten, origin) if flatten else None
    paths = _paging_paths(paging)
    for what, path in paths.items():
        _schema_path(response_type, path, origin, what)
    if paging is not None and paging.kind == "cursor" and record_type is not None:
        assert paging.cursor_field is not None
        _schema_path(record_type, paging.cursor_field, origin, "cursor_field")

    call_arguments = dict(arguments or {})
    if since is not None:
        call_arguments[since[0]] = since_value(client, operation, *since)
    nest_arguments(call_arguments, origin)  # a clash is a ConfigError before any call
    columns = record_columns(record_type, flatten, item_type)
    pager = Pager(paging, origin) if paging is not None else None

    def pages() -> Iterator[tuple[int, list[dict[str, Any]], list[tuple[int, int, int]]]]:
        """Each page's number, flat rows and their positions (page, record on the page,
        occurrence; 0: none), page after page (once: the pager keeps its place)."""
        read = 0
        for page in range(1, max_pages + 1):
            if pager is not None:
                call_arguments.update(pager.arguments())
            result = call_operation(
                service,
                operation,
                nest_arguments(call_arguments, origin),
                where=origin,
                retry=policy,
                retriable_faults=retriable_faults,
            )
            data = response_data(result, response_type)
            records = _as_records(value_at_path(data, records_path, origin, "records_path"))
            page_rows = [flatten_record(record, record_type) for record in records]
            rows: list[dict[str, Any]] = []
            positions: list[tuple[int, int, int]] = []
            if flatten:
                for index, (record, row) in enumerate(zip(records, page_rows, strict=True), 1):
                    for line, position in _flattened_rows(record, row, flatten, item_type):
                        rows.append(line)
                        positions.append((page, index, position))
            else:
                rows = page_rows
                positions = [(page, index, 0) for index in range(1, len(records) + 1)]
            read += len(rows)
            yield page, rows, positions
            if pager is None:
                return
            found = {
                what: value_at_path(data, path, origin, what) if data is not None else None
                for what, path in paths.items()
            }
            last_cursor = None
            if paging is not None and paging.kind == "cursor" and page_rows:
                assert paging.cursor_field is not None
                last_cursor = page_rows[-1].get(paging.cursor_field)
            if pager.after_page(
                len(records),
                total=found.get("total_path"),
                has_more=found.get("has_more_path"),
                next_token=found.get("token_path"),
                last_cursor=last_cursor,
            ):
                return
        raise PermanentError(
            f"{origin}: still more pages after max_pages={max_pages} ({read} records read)"
            " — raise max_pages or check the paging settings; nothing of this pull is loaded"
        )

    def table(
        frame: pd.DataFrame, positions: Sequence[tuple[int, int, int]], fingerprint: str
    ) -> RawTable:
        check_key(key, list(frame.columns), origin)
        if key:
            lineage = key_lineage(frame, operation, key)
        else:
            places = [f"{operation}:page {page} row {index}" for page, index, _ in positions]
            lineage = pd.Series(places, dtype="str")
        if flatten:
            occurrence = flatten.rsplit(".", 1)[-1]
            suffixes = [f"/{occurrence}={position}" for _, _, position in positions]
            lineage = (lineage + pd.Series(suffixes, dtype="str")).astype("str")
        return RawTable(frame=frame, source_rows=lineage, fingerprint=fingerprint, origin=origin)

    if stream and record_type is not None and (not flatten or item_type is not None):

        def page_tables() -> Iterator[RawTable]:
            for page, rows, positions in pages():
                frame = pd.DataFrame(
                    {label: column_text([row.get(label) for row in rows]) for label in columns},
                    index=pd.RangeIndex(len(rows)),
                )
                extra = {name for row in rows for name in row} - set(columns)
                if extra:
                    raise PermanentError(
                        f"{origin}: page {page} has fields the WSDL does not describe"
                        f" ({', '.join(sorted(extra))}) — fix the WSDL or the service"
                    )
                yield table(frame, positions, "")

        return streamed_pages(origin, page_tables)
    rows: list[dict[str, Any]] = []
    positions: list[tuple[int, int, int]] = []
    for _page, page_rows, page_positions in pages():
        rows.extend(page_rows)
        positions.extend(page_positions)
    frame, fingerprint = text_frame(rows, columns=columns)
    return table(frame, positions, fingerprint)


# --------------------------------------------------------------------------------------------
# `datafix check`: a source's settings against the WSDL, without calling the service

Setting = tuple[str | int, ...]


def _paging_arguments(paging: SoapPaging | None) -> dict[Setting, str]:
    """The request arguments the paging sends: `{setting: argument path}`."""
    if paging is None:
        return {}
    names = {("paging", "page_size_argument"): paging.page_size_argument}
    own = {
        "page_number": "page_argument",
        "offset": "offset_argument",
        "continuation_token": "token_argument",
        "cursor": "cursor_argument",
    }[paging.kind]
    names[("paging", own)] = getattr(paging, own)
    return names


def check_source(
    wsdl: str,
    *,
    operation: str,
    records_path: str,
    arguments: Mapping[str, Any] | None = None,
    paging: SoapPaging | None = None,
    since_argument: str | None = None,
    cursor_column: str | None = None,
    key: Sequence[str] = (),
    flatten: str | None = None,
    timeout: float = 30,
) -> list[str] | None:
    """A SOAP source's settings checked against its WSDL (loaded once, `timeout` seconds for a
    URL; the service is not called); the columns its rows will have (None when the WSDL leaves
    the records open).

    Checked: the operation exists; `records_path`, the paging's answer paths (`total_path`,
    `has_more_path`, `token_path`) are in its answer; `flatten` is a repeated element of the
    record; every argument (fixed, paging, `since_argument`) is in its request; no required
    request element is left out; `key`, `cursor_column` and the paging's `cursor_field` are
    columns. Every problem found is in one `SettingProblems` (setting, message, did-you-mean);
    a WSDL that cannot be loaded raises as `make_client` does.
    """
    client = make_client(wsdl, timeout=timeout)
    problems: list[tuple[Setting, str, str]] = []

    def problem(setting: Setting, message: str, hint: str = "") -> None:
        if not hint and " — " in message:  # path_problem's did-you-mean goes to the hint
            message, _, hint = message.rpartition(" — ")
        problems.append((setting, message, hint))

    names = operation_names(client)
    if operation not in names:
        problem(
            ("operation",),
            f"the WSDL has no operation `{operation}`",
            did_you_mean(operation, names),
        )
        raise SettingProblems(problems)

    answer = output_elements(client, operation)
    found = path_problem(answer, records_path, root=f"{operation}'s answer")
    if found:
        problem(("records",), f"records `{records_path}`: {found}")
    for what, path in _paging_paths(paging).items():
        found = path_problem(answer, path, root=f"{operation}'s answer")
        if found:
            problem(("paging", what), f"{what} `{path}`: {found}")
    record = below(answer, records_path)
    if flatten and not _found_at(problems, ("records",)):
        found = path_problem(record, flatten, root=records_path)
        target = element_at(record, flatten)
        if found:
            problem(("flatten",), f"flatten `{flatten}`: {found}")
        elif target is not None and not target.repeated:
            inner = [e.path for e in below(record, flatten) if e.repeated and "." not in e.path]
            hint = f"did you mean `{flatten}.{inner[0]}`?" if inner else ""
            problem(("flatten",), f"flatten `{flatten}` is not a repeated element", hint)

    answer_wrong = bool(problems)
    request = input_elements(client, operation)
    sent: dict[Setting, str] = {("arguments", name): name for name in arguments or {}}
    sent.update(_paging_arguments(paging))
    if since_argument:
        sent[("cursor", "argument")] = since_argument
    wrong_arguments = False
    for setting, path in sent.items():
        found = path_problem(request, path, root=f"{operation}'s request")
        if found:
            wrong_arguments = True
            problem(setting, f"argument `{path}`: {found}")
    missing = [] if wrong_arguments else required_paths(request, sent=sent.values())
    if missing:  # (a misspelt argument is the problem, not the element it was meant for)
        listed = ", ".join(f"`{path}`" for path in missing)
        problem(
            ("operation",),
            f"the request of `{operation}` leaves out {listed}, which the WSDL requires",
            "set it under `arguments` (a dotted name fills a nested element), or as a paging"
            " argument",
        )

    columns: list[str] | None = None
    if not answer_wrong:
        service = service_for(client)
        record_type = _schema_path(
            response_type_of(service, operation), records_path, operation, "records"
        )
        item_type = _flatten_target(record_type, flatten, operation) if flatten else None
        columns = record_columns(record_type, flatten, item_type) or None
    if columns is not None:
        named: list[tuple[Setting, str, str]] = [
            (("key", index), name, "key") for index, name in enumerate(key)
        ]
        if cursor_column:
            named.append((("cursor", "column"), cursor_column, "cursor column"))
        if paging is not None and paging.kind == "cursor" and paging.cursor_field:
            named.append((("paging", "cursor_field"), paging.cursor_field, "cursor_field"))
        for setting, name, what in named:
            if name not in columns:
                problem(
                    setting,
                    f"{what} `{name}` is not a field of the records `{records_path}`",
                    did_you_mean(name, columns),
                )
    if problems:
        raise SettingProblems(problems, header=columns)
    return columns


def _found_at(problems: Sequence[tuple[Setting, str, str]], setting: Setting) -> bool:
    return any(where == setting for where, _, _ in problems)
