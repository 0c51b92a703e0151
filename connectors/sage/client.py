"""Read a Sage X3 object through its classic SOAP web service into a text `RawTable`.

The service is `CAdxWebServiceXmlCC` (RPC/encoded, PROTOCOLS.md §3a), reached through the same
hardened zeep client as the landlord ERPs (`connectors.soap.client.make_client`, with the
bundled SOAP-encoding schema), so the same timeouts, retries and error classes apply.

How a read goes:

1. `query(callContext, publicName, objectKeys, listSize)` lists the object's records (the
   object's query list fields, one `LIN` each). `criteria` are sent as `objectKeys`.
   X3's query has no paging: when it returns `list_size` lines or more the list may be cut,
   and the read stops with a ConfigError asking for a larger `list_size` (nothing is lost
   silently).
2. `since=(field, value)` keeps the lines whose `field` (a field of the query list, dates
   compared as ISO text) is at or after `value`. The filter runs here, on the query list:
   X3's `objectKeys` criteria are equalities and no public source documents a range syntax.
3. With `details=True`, `read(callContext, publicName, objectKeys)` fetches each listed record
   by its `keys` (e.g. `BPCNUM`), which gives every screen field; with `details=False` the
   query lines are the rows.

`status` 0 is a refusal: a PermanentError carrying X3's messages (`[error] … Fiche
inexistante`). The `resultXml` payload is parsed by lxml with entity resolution, DTD loading
and network access off; a payload with a `<!DOCTYPE` is refused outright.

Columns: each `FLD` by its `NAME` (a name repeated in a later group becomes `GROUP.NAME`);
a list field (`LST`) as `NAME.1`, `NAME.2` …; a table (`TAB`) as `TABLE.LINE.NAME`
(`SIH4_1.1.ITMREF`), unless `lines` names it: then each of its lines is a row (header fields
repeated, line fields by `NAME`, or `TABLE.NAME` where a header field has that name) and
lineage says which line (`SIH:NUM=FA001 line 2`). Values are text: dates (`TYPE="Date"`,
`YYYYMMDD`) become ISO (`2026-03-01`), an empty date `""`; decimals stay the digits X3 sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import requests
import zeep
from lxml import etree

from connectors.errors import ConfigError, PermanentError
from connectors.lazy import pd
from connectors.rawtable import RawTable, key_lineage, line_lineage
from connectors.retry import RetryPolicy
from connectors.sage.models import SAGE_X3_RETRY, SageMessage, SageResult
from connectors.soap.client import (
    call_operation,
    check_key,
    has_doctype,
    make_client,
    masked_location,
    service_for,
    text_frame,
)

__all__ = [
    "WSS_NAMESPACE",
    "call_context",
    "object_keys_param",
    "parse_result_xml",
    "query_lines",
    "read_sage_x3",
    "sage_result",
]

WSS_NAMESPACE = "http://www.adonix.com/WSS"
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_X3_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


def call_context(pool_alias: str, language: str, request_config: str) -> dict[str, str]:
    """The `callContext` of every Sage X3 call (the user is the web service pool's)."""
    return {
        "codeLang": language,
        "codeUser": "",
        "password": "",
        "poolAlias": pool_alias,
        "poolId": "",
        "requestConfig": request_config,
    }


def sage_result(answer: Any) -> SageResult:
    """zeep's `CAdxResultXml` as a `SageResult`."""
    messages = tuple(
        SageMessage(type=str(item["type"] or ""), message=str(item["message"] or ""))
        for item in (answer["messages"] or [])
        if item is not None
    )
    status = answer["status"]
    return SageResult(
        status=int(status) if status is not None else 0,
        result_xml=answer["resultXml"],
        messages=messages,
    )


def _check_status(result: SageResult, where: str) -> None:
    if result.ok:
        return
    said = "; ".join(map(str, result.messages)) or "no message"
    raise PermanentError(
        f"{where}: Sage X3 refused the call (status {result.status}): {said} — check the"
        " public name, keys and criteria in the datafix, or ask the Sage administrator"
    )


def parse_result_xml(text: str | None, where: str) -> etree._Element | None:
    """The `resultXml` payload as an element, parsed without entities, DTDs or network."""
    if text is None or not text.strip():
        return None
    if has_doctype(text):
        raise PermanentError(
            f"{where}: refused the resultXml payload: it carries a DTD or entity declarations,"
            " which the hub never reads (XXE, billion laughs) — ask the Sage administrator"
        )
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        # the payload is already text: its declaration (encoding="UTF-8") no longer applies
        root = etree.fromstring(_DECLARATION.sub("", text, count=1).encode("utf-8"), parser)
    except etree.XMLSyntaxError:
        raise PermanentError(
            f"{where}: the resultXml payload is malformed XML — ask the Sage administrator"
        ) from None
    if root.getroottree().docinfo.doctype:
        raise PermanentError(f"{where}: refused the resultXml payload: it carries a DTD")
    return root


def _text(node: etree._Element, kind: str | None) -> str:
    value = node.text or ""
    if (kind or "").lower() == "date":
        if value.strip() in ("", "0", "00000000"):
            return ""
        match = _X3_DATE.match(value.strip())
        if match:
            return "-".join(match.groups())
    return value


def _fields(container: etree._Element) -> list[tuple[str, str]]:
    """(name, text) of the FLD and LST children of a GRP or LIN, in order."""
    found: list[tuple[str, str]] = []
    for node in container:
        if node.tag == "FLD":
            found.append((node.get("NAME", ""), _text(node, node.get("TYPE"))))
        elif node.tag == "LST":
            for number, item in enumerate(node.iterchildren("ITM"), start=1):
                found.append((f"{node.get('NAME', '')}.{number}", _text(item, node.get("TYPE"))))
    return found


def query_lines(root: etree._Element | None) -> list[dict[str, str]]:
    """The `LIN` lines of a Sage X3 `query` answer, each as {field name: text}."""
    if root is None:
        return []
    return [dict(_fields(line)) for line in root.iter("LIN")]


def _object_rows(
    root: etree._Element | None, lines: str | None, where: str
) -> list[tuple[dict[str, str], str | None]]:
    """Rows of one read object: (values, line number or None)."""
    header: dict[str, str] = {}
    tables: dict[str, list[tuple[str, dict[str, str]]]] = {}
    if root is None:
        return [({}, None)]
    for node in root:
        if node.tag == "GRP":
            for name, value in _fields(node):
                header[f"{node.get('ID', '')}.{name}" if name in header else name] = value
        elif node.tag == "TAB":
            tables[node.get("ID", "")] = [
                (line.get("NUM", str(number)), dict(_fields(line)))
                for number, line in enumerate(node.iterchildren("LIN"), start=1)
            ]
    if lines is not None and lines not in tables:
        raise ConfigError(
            f"{where}: the object has no table `{lines}` (there: {', '.join(tables) or 'none'})"
            " — fix `lines` in the datafix"
        )
    for table_id, table_lines in tables.items():
        if table_id == lines:
            continue
        for number, values in table_lines:
            for name, value in values.items():
                header[f"{table_id}.{number}.{name}"] = value
    if lines is None:
        return [(header, None)]
    exploded = [
        (
            {
                **header,
                **{
                    (f"{lines}.{name}" if name in header else name): value
                    for name, value in values.items()
                },
            },
            number,
        )
        for number, values in tables[lines]
    ]
    return exploded or [(header, None)]  # a record without lines still shows up once


def object_keys_param(client: zeep.Client, pairs: Sequence[tuple[str, str]]) -> Any:
    """The `objectKeys` parameter of a Sage X3 call.

    The (key, value) pairs as an `ArrayOfCAdxParamKeyValue` of the client's WSDL, or
    `SkipValue` when there are none.
    """
    if not pairs:
        return zeep.xsd.SkipValue
    array = client.get_type(f"{{{WSS_NAMESPACE}}}ArrayOfCAdxParamKeyValue")
    pair = client.get_type(f"{{{WSS_NAMESPACE}}}CAdxParamKeyValue")
    return array([pair(key=key, value=value) for key, value in pairs])


def read_sage_x3(
    wsdl: str,
    *,
    pool_alias: str,
    public_name: str,
    keys: Sequence[str],
    language: str = "FRA",
    list_size: int = 1000,
    criteria: Mapping[str, str] | None = None,
    details: bool = True,
    lines: str | None = None,
    since: tuple[str, str] | None = None,
    request_config: str = "adxwss.optreturn=XML",
    address: str | None = None,
    auth: tuple[str, str] | None = None,
    session: requests.Session | None = None,
    timeout: float = 30,
    operation_timeout: float = 60,
    retry: RetryPolicy | None = None,
) -> RawTable:
    """Read the records of X3 object `public_name` (e.g. `BPC`, `SIH`) as text rows.

    Args:
        wsdl: the `CAdxWebServiceXmlCC` WSDL, a file or an http(s) URL.
        pool_alias: the web-service pool (`callContext.poolAlias`).
        public_name: the published web service of the object.
        keys: the object's key fields (`BPCNUM`), read from each query line to call `read`
            and to name rows (`BPC:BPCNUM=C001`).
        language: `callContext.codeLang` (`FRA`, `ENG` …).
        list_size: the most lines `query` may return; reaching it is an error.
        criteria: `objectKeys` equality criteria of the query (`{"BPCTYP": "1"}`).
        details: `read` each record (every field) rather than keeping the query list only.
        lines: a table of the object (`SIH4_1`) to give one row per line.
        since: `(query list field, ISO value)`: keep records with field >= value.
        request_config: `callContext.requestConfig`.
        address: the endpoint to call instead of the WSDL's `soap:address`.
        auth: (user, password) for HTTP Basic authentication (X3 V7 and later), set on
            `session` (a new one when none is given).
        session: a requests session (TLS settings …).
        timeout / operation_timeout / retry: as `connectors.soap.client.read_soap`
            (`SAGE_X3_RETRY` by default).
    """
    origin = f"{masked_location(wsdl)} {public_name}"
    if list_size < 1:
        raise ConfigError(f"{origin}: list_size must be at least 1")
    if details and not keys:
        raise ConfigError(f"{origin}: give the object's `keys` (e.g. BPCNUM) to read each record")
    policy = retry or SAGE_X3_RETRY
    if auth is not None:
        session = session or requests.Session()
        session.auth = auth
    client = make_client(
        wsdl,
        timeout=timeout,
        operation_timeout=operation_timeout,
        session=session,
        soap_encoding=True,
        retry=policy,
    )
    service = service_for(client, address)
    context = call_context(pool_alias, language, request_config)

    def call(operation: str, **parameters: Any) -> etree._Element | None:
        where = f"{origin} {operation}"
        answer = call_operation(
            service,
            operation,
            {"callContext": context, "publicName": public_name, **parameters},
            where=where,
            retry=policy,
        )
        result = sage_result(answer)
        _check_status(result, where)
        return parse_result_xml(result.result_xml, where)

    listed = query_lines(
        call(
            "query",
            objectKeys=object_keys_param(client, list((criteria or {}).items())),
            listSize=list_size,
        )
    )
    if len(listed) >= list_size:
        raise ConfigError(
            f"{origin}: query returned {len(listed)} lines, the list_size limit: the list may be"
            " cut — raise `list_size` in the datafix (or narrow it with `criteria`)"
        )
    query_columns = list(dict.fromkeys(name for line in listed for name in line))
    if since is not None:
        field, lower = since
        if listed and field not in query_columns:
            raise ConfigError(
                f"{origin}: `since` field `{field}` is not in the query list"
                f" ({', '.join(query_columns)}) — pick one of those"
            )
        listed = [line for line in listed if line.get(field, "") >= lower]
    if listed:
        check_key(keys, query_columns, f"{origin} query")

    rows: list[dict[str, str]] = []
    line_numbers: list[str | None] = []
    if not details:
        rows = listed
        line_numbers = [None] * len(rows)
    for line in listed if details else ():
        root = call("read", objectKeys=object_keys_param(client, [(k, line[k]) for k in keys]))
        for values, number in _object_rows(root, lines, f"{origin} read"):
            rows.append(values)
            line_numbers.append(number)

    frame, fingerprint = text_frame(rows, columns=keys)
    if keys:
        names = key_lineage(frame, public_name, keys)
    else:
        names = line_lineage(f"{public_name}:row ", range(1, len(rows) + 1))
    lineage = [
        name if number is None else f"{name} line {number}"
        for name, number in zip(names, line_numbers, strict=True)
    ]
    return RawTable(
        frame=frame,
        source_rows=pd.Series(lineage, dtype="str"),
        fingerprint=fingerprint,
        origin=origin,
    )
