"""What a WSDL says an operation takes and answers, as dotted paths: for `datafix check`.

Every function here reads the WSDL only (through zeep's type introspection); none calls the
service. The SOAP source's check (`connectors.soap.kinds`) and the SOAP sink's use them the
same way:

    client = make_client(wsdl, timeout=10)       # connectors.soap.client: hardened, timed
    operation_names(client)                      # ['ListerBonsDeTravaux', 'ListerEcritures', …]
    suggest("ListerEcriture", operation_names(client))      # 'ListerEcritures'
    input_paths(client, "ListerEcritures")       # ['page', 'page.numero', 'page.taille', …]
    output_paths(client, "ListerEcritures")      # ['ecritures', 'ecritures.ecriture', …]
    required_paths(client, "ListerEcritures", sent=["page.numero"])   # ['page.taille']
    path_problem(output_elements(client, op), "ecritures.ecriture.montant.valuer")
    # "`valuer` is not in `ecritures.ecriture.montant` (there: valeur, devise) — did you mean
    #  `ecritures.ecriture.montant.valeur`?"

Paths start below the operation's message element: for wrapped document/literal they are the
call's arguments (`page.numero`) and the answer's fields as the SOAP client reads them
(`ecritures.ecriture`); for RPC they start at the message parts. An element's attributes are
paths too (`montant.devise` for `<montant devise="EUR">`), marked `attribute`.

`SettingProblems` is how a kind's check hook reports several problems, each at the datafix
setting it concerns (`pipelines/lib/checks.py` places each at its own `file:line:col`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import zeep
from zeep.xsd import ComplexType
from zeep.xsd.elements.indicators import Choice

from connectors.errors import ConfigError

__all__ = [
    "Element",
    "SettingProblems",
    "below",
    "did_you_mean",
    "element_at",
    "input_elements",
    "input_paths",
    "operation_names",
    "output_elements",
    "output_paths",
    "path_problem",
    "required_paths",
    "suggest",
]

_MAX_DEPTH = 12  # recursive types (a node holding nodes) are walked this deep


@dataclass(frozen=True)
class Element:
    """One element (or attribute) of an operation's input or output, by dotted path.

    Attributes:
        path: dotted from the message element (`engagement.montant.valeur`).
        repeated: the element itself may occur more than once (`maxOccurs` > 1).
        required: it must occur whenever its parent does (`minOccurs` ≥ 1, outside a choice;
            `use="required"` for an attribute).
        complex: it holds elements or attributes of its own.
        attribute: an XML attribute rather than an element.
        type_name: the XSD type's name (`decimal`, `Montant` …), for messages.
    """

    path: str
    repeated: bool = False
    required: bool = False
    complex: bool = False
    attribute: bool = False
    type_name: str = ""

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def parent(self) -> str:
        return self.path.rpartition(".")[0]


class SettingProblems(ConfigError):
    """Several configuration problems, each at the datafix setting it concerns.

    `problems` holds `(setting, message, hint)`: `setting` a path inside the source or sink's
    settings (`("operation",)`, `("paging", "page_argument")`), `hint` a did-you-mean or "".
    `header`: the source's columns when they are known all the same (a wrong argument does not
    change them), so the mapped fields are checked in the same pass. `datafix check` reports
    each problem at its own place; elsewhere the error reads as every message, one a line.
    """

    def __init__(
        self,
        problems: Sequence[tuple[tuple[str | int, ...], str, str]],
        *,
        header: list[str] | None = None,
    ) -> None:
        self.problems = list(problems)
        self.header = header
        lines = [f"{message} — {hint}" if hint else message for _, message, hint in problems]
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------------------------
# Operations and names


def _operations(client: zeep.Client) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for service in client.wsdl.services.values():
        for port in service.ports.values():
            for name, operation in port.binding._operations.items():
                operations.setdefault(name, operation)
    return operations


def operation_names(client: zeep.Client) -> list[str]:
    """Every operation of every port of the WSDL, sorted."""
    return sorted(_operations(client))


def suggest(name: str, choices: Iterable[str]) -> str | None:
    """The choice closest to a misspelt `name` (case-insensitive), or None when none is
    close."""
    options = list(choices)
    by_lower = {option.lower(): option for option in options}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def did_you_mean(name: str, choices: Iterable[str], *, limit: int = 12) -> str:
    """`did you mean `X`?`, else the choices there are (at most `limit` of them)."""
    options = list(choices)
    close = suggest(name, options)
    if close is not None:
        return f"did you mean `{close}`?"
    shown = ", ".join(options[:limit]) + (", …" if len(options) > limit else "")
    return f"there: {shown}" if options else "there is nothing there"


def _operation(client: zeep.Client, operation: str) -> Any:
    operations = _operations(client)
    if operation not in operations:
        hint = did_you_mean(operation, sorted(operations))
        raise ConfigError(f"the WSDL has no operation `{operation}` — {hint}")
    return operations[operation]


# --------------------------------------------------------------------------------------------
# Elements


def _type_name(xsd_type: Any) -> str:
    qname = getattr(xsd_type, "qname", None)
    if qname is not None:
        return str(getattr(qname, "localname", qname))
    return type(xsd_type).__name__


def _repeated(element: Any) -> bool:
    most = getattr(element, "max_occurs", 1)
    return most == "unbounded" or (isinstance(most, int) and most > 1)


def _children(xsd_type: Any) -> list[tuple[str, Any, bool]]:
    """(name, element, may be required) of a complex type's elements then attributes."""
    if not isinstance(xsd_type, ComplexType):
        return []
    found: list[tuple[str, Any, bool]] = []

    def walk(items: Iterable[tuple[Any, Any]], optional: bool) -> None:
        for name, item in items:
            if isinstance(item, zeep.xsd.Element):
                found.append((item.attr_name if name is None else name, item, not optional))
            elif hasattr(item, "elements"):  # a sequence, choice, all or group
                inner_optional = (
                    optional or isinstance(item, Choice) or getattr(item, "min_occurs", 1) == 0
                )
                walk(item.elements, inner_optional)

    walk(xsd_type.elements_nested, False)
    for name, attribute in xsd_type.attributes:
        found.append((name, attribute, bool(getattr(attribute, "required", False))))
    return found


def _walk(xsd_type: Any, prefix: str, depth: int, out: list[Element]) -> None:
    if depth > _MAX_DEPTH:
        return
    for name, element, may_require in _children(xsd_type):
        attribute = isinstance(element, zeep.xsd.Attribute)
        child_type = getattr(element, "type", None)
        nested = isinstance(child_type, ComplexType) and bool(
            child_type.elements or child_type.attributes
        )
        required = may_require and (attribute or getattr(element, "min_occurs", 1) >= 1)
        path = f"{prefix}{name}"
        out.append(
            Element(
                path=path,
                repeated=_repeated(element),
                required=required,
                complex=nested,
                attribute=attribute,
                type_name=_type_name(child_type),
            )
        )
        if nested:
            _walk(child_type, f"{path}.", depth + 1, out)


def _body_elements(message: Any) -> list[Element]:
    body = getattr(message, "body", None)
    out: list[Element] = []
    if body is not None:
        _walk(getattr(body, "type", None), "", 0, out)
    return out


def input_elements(client: zeep.Client, operation: str) -> list[Element]:
    """Every element and attribute the operation's request may carry, in schema order.

    ConfigError (with a did-you-mean) when the WSDL has no such operation.
    """
    return _body_elements(_operation(client, operation).input)


def output_elements(client: zeep.Client, operation: str) -> list[Element]:
    """Every element and attribute of the operation's answer, in schema order."""
    return _body_elements(_operation(client, operation).output)


def input_paths(client: zeep.Client, operation: str) -> list[str]:
    """The dotted paths of `input_elements`."""
    return [element.path for element in input_elements(client, operation)]


def output_paths(client: zeep.Client, operation: str) -> list[str]:
    """The dotted paths of `output_elements`."""
    return [element.path for element in output_elements(client, operation)]


def element_at(elements: Sequence[Element], path: str) -> Element | None:
    """The element at `path`, or None."""
    for element in elements:
        if element.path == path:
            return element
    return None


def below(elements: Sequence[Element], path: str) -> list[Element]:
    """The elements under `path` (not `path` itself), their paths made relative to it; every
    element for an empty `path`."""
    if not path:
        return list(elements)
    prefix = f"{path}."
    return [
        Element(
            path=element.path.removeprefix(prefix),
            repeated=element.repeated,
            required=element.required,
            complex=element.complex,
            attribute=element.attribute,
            type_name=element.type_name,
        )
        for element in elements
        if element.path.startswith(prefix)
    ]


def path_problem(elements: Sequence[Element], path: str, *, root: str = "") -> str | None:
    """None when `path` is one of `elements`; else the message for its first wrong segment,
    naming what is there and the closest full path (`did you mean …?`).

    `root` is the place the paths start from, for the message (`the answer`, `ecritures.ecriture`).
    """
    if element_at(elements, path) is not None:
        return None
    segments = path.split(".")
    parent = ""
    for segment in segments:
        here = f"{parent}.{segment}" if parent else segment
        if element_at(elements, here) is None:
            siblings = [e.name for e in elements if e.parent == parent]
            place = f"`{parent}`" if parent else (f"`{root}`" if root else "the message")
            if parent and not siblings:
                return (
                    f"`{parent}` holds no fields (it is a plain value), so `{path}` cannot be read"
                )
            close = suggest(path, [e.path for e in elements]) or _closest_leaf(
                elements, parent, segment
            )
            hint = f" — did you mean `{close}`?" if close else ""
            there = ", ".join(siblings) or "nothing"
            return f"`{segment}` is not in {place} (there: {there}){hint}"
        parent = here
    return None  # unreachable: the whole path exists


def _closest_leaf(elements: Sequence[Element], parent: str, segment: str) -> str | None:
    siblings = [e.name for e in elements if e.parent == parent]
    close = suggest(segment, siblings)
    if close is None:
        return None
    return f"{parent}.{close}" if parent else close


def required_paths(
    client_or_elements: zeep.Client | Sequence[Element],
    operation: str | None = None,
    *,
    sent: Iterable[str] = (),
) -> list[str]:
    """Required input elements a request would leave out, when it sends the paths `sent`.

    An element must be sent when it is required and its parent is sent: a required top-level
    element always, a required child of an optional element only when something under that
    element is sent. A required complex element is sent when any of its children is, so
    only the required leaves (and required complex elements with nothing required below them)
    are named.
    """
    if isinstance(client_or_elements, zeep.Client):
        assert operation is not None
        elements = input_elements(client_or_elements, operation)
    else:
        elements = list(client_or_elements)
    given = set(sent)
    present: set[str] = set()
    for path in given:  # every ancestor of a sent path is sent
        parts = path.split(".")
        present.update(".".join(parts[: end + 1]) for end in range(len(parts)))

    def is_sent(path: str) -> bool:
        return path in present

    def parent_sent(element: Element) -> bool:
        parent = element.parent
        if not parent:
            return True
        holder = element_at(elements, parent)
        if holder is None:
            return True
        return is_sent(parent) or (holder.required and parent_sent(holder))

    missing: list[str] = []
    for element in elements:
        if not element.required or is_sent(element.path) or not parent_sent(element):
            continue
        if element.complex and any(
            child.required for child in elements if child.parent == element.path
        ):
            continue  # its required children are named instead
        if any(sent_path.startswith(f"{element.path}.") for sent_path in given):
            continue
        missing.append(element.path)
    return missing
