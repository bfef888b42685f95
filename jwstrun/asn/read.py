"""Reading associations back: :func:`load_association` parses an association file and
checks it is one calwebb_image2/image3 can run (structure, jwst's schema, level,
names, member paths), without reading the members' headers (:mod:`.check` does).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..products import product_suffix
from .levels import _ASN_TYPE, _UNSPECIFIED_ASN_TYPES, LEVEL_INPUTS, _level_from_asn_type
from .members import _absolute, _resolve_member
from .naming import check_product_name
from .schema import _validate_schema

#: (product name, [(expname, exptype), ...]) of each product, as parsed
_Parsed = list[tuple[str, list[tuple[str, str]]]]


@dataclass
class AsnMember:
    """One member: its name as written and its path resolved against the association."""

    expname: str
    exptype: str
    path: Path


@dataclass
class AsnProduct:
    """One product and its members."""

    name: str
    members: list[AsnMember]

    def by_type(self, exptype: str) -> list[AsnMember]:
        return [m for m in self.members if m.exptype == exptype]


@dataclass
class Association:
    """An association file that passed :func:`load_association`'s checks."""

    path: Path
    level: int
    data: dict
    products: list[AsnProduct]

    @property
    def asn_type(self) -> str:
        return _ASN_TYPE[self.level]

    def member_paths(self, exptype: str | None = None) -> list[Path]:
        """Resolved member paths (each once), optionally of one exptype."""
        seen: dict[Path, None] = {}
        for product in self.products:
            for member in product.members:
                if exptype is None or member.exptype == exptype:
                    seen.setdefault(member.path, None)
        return list(seen)


def _structure_error(path: Path, where: str, what: str) -> InputError:
    return InputError(f"{path}: {where}: {what}. Rebuild it with 'jwstrun asn'.")


def _parse_products(path: Path, data) -> _Parsed:
    if not isinstance(data, dict):
        raise _structure_error(path, "top level", "expected a JSON object with 'products'")
    products = data.get("products")
    if not isinstance(products, list) or not products:
        raise _structure_error(
            path, "products", "missing or empty; an association needs at least one product"
        )
    parsed = []
    for index, product in enumerate(products):
        where = f"product {index + 1}"
        if not isinstance(product, dict):
            raise _structure_error(path, where, "expected an object with 'name' and 'members'")
        name = product.get("name")
        if not isinstance(name, str):
            raise _structure_error(path, where, "has no product name")
        try:
            check_product_name(name, where=f"{path}: {where}")
        except InputError as exc:
            raise InputError(f"{exc} Fix the name in the association.") from None
        members = product.get("members")
        if not isinstance(members, list) or not members:
            raise _structure_error(path, f"{where} ({name})", "has no members")
        rows = []
        for m_index, member in enumerate(members):
            m_where = f"{where} ({name}), member {m_index + 1}"
            if not isinstance(member, dict):
                raise _structure_error(
                    path, m_where, "expected an object with 'expname' and 'exptype'"
                )
            expname, exptype = member.get("expname"), member.get("exptype")
            if not isinstance(expname, str) or not expname.strip():
                raise _structure_error(path, m_where, "has no 'expname'")
            if not isinstance(exptype, str) or not exptype.strip():
                raise _structure_error(path, m_where, f"'{expname}' has no 'exptype'")
            rows.append((expname, exptype.strip().lower()))
        parsed.append((name, rows))
    return parsed


def _infer_level(path: Path, parsed) -> int:

    levels = set()
    for _name, rows in parsed:
        for expname, _exptype in rows:
            suffix = product_suffix(expname)
            for level, types in LEVEL_INPUTS.items():
                if suffix in types:
                    levels.add(level)
    if len(levels) != 1:
        raise InputError(
            f"{path}: cannot tell whether this is a Level-2 or a Level-3 association (asn_type "
            'does not say and the member names do not either). Set "asn_type" to "image2" '
            'or "image3".'
        )
    return levels.pop()


def load_association(
    path: str | os.PathLike,
    *,
    level: int | None = None,
    allow_outside: bool = False,
    check_members_exist: bool = True,
) -> Association:
    """Read an association file and check it is one calwebb_image2/image3 can run.

    Checks JSON syntax, structure and jwst's schema, ``asn_type`` (against ``level``
    when given), product names (no path separators or ``..``), member paths (none
    outside the association's directory unless ``allow_outside``), duplicate
    members and, unless ``check_members_exist`` is False, that members exist.
    Raises :class:`InputError` naming the file; returns an :class:`Association`.
    """
    path = Path(path)
    data = _read_json(path)
    parsed = _parse_products(path, data)
    level = _association_level(path, data, parsed, level)
    _validate_schema(data, level, path)
    _check_product_names(path, parsed, level)
    products = _resolve_products(path, parsed, level, allow_outside, check_members_exist)
    return Association(path, level, data, products)


def _read_json(path: Path):
    if not path.exists():
        raise InputError(f"{path}: association file not found. Check the path.")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an association .json file.")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the association ({exc}).") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). "
            "Fix the file or rebuild it with 'jwstrun asn'."
        ) from None
    except RecursionError:
        # json raises this (not JSONDecodeError) for arrays/objects nested
        # thousands deep; no association looks like that.
        raise InputError(
            f"{path}: is not an association: its JSON is nested too deeply. "
            "Rebuild it with 'jwstrun asn'."
        ) from None


def _association_level(path: Path, data: dict, parsed: _Parsed, level: int | None) -> int:
    """The level its ``asn_type`` says (or its member names, when it says nothing);
    refused when it is not ``level``."""
    asn_type = data.get("asn_type", "")
    found = _level_from_asn_type(asn_type)
    if found is None:
        if not isinstance(asn_type, str) or asn_type not in _UNSPECIFIED_ASN_TYPES:
            raise InputError(
                f"{path}: asn_type is '{asn_type}'; jwstrun runs image associations "
                "(asn_type image2 or image3). Use the matching jwst pipeline for this one."
            )
        found = _infer_level(path, parsed)
    if level is not None and found != level:
        raise InputError(
            f"{path}: asn_type is '{_ASN_TYPE[found]}' (Level {found}) but a Level-{level} "
            f"({_ASN_TYPE[level]}) association is needed here. Build one with 'jwstrun asn' "
            f"from {'_rate' if level == 2 else '_cal'} files."
        )
    return found


def _check_product_names(path: Path, parsed: _Parsed, level: int) -> None:
    names = Counter(name for name, _rows in parsed)
    for name, count in names.items():
        if count > 1:
            raise InputError(
                f"{path}: product name '{name}' appears {count} times; their outputs would "
                "overwrite each other. Give each product its own name."
            )
    if level == 3 and len(parsed) > 1:
        raise InputError(
            f"{path}: has {len(parsed)} products, but calwebb_image3 processes only the first. "
            "Write one association per product (jwstrun asn --group-by)."
        )


def _resolve_products(
    path: Path, parsed: _Parsed, level: int, allow_outside: bool, check_members_exist: bool
) -> list[AsnProduct]:
    asn_dir = _absolute(path.parent)
    products = []
    science_seen: dict[Path, str] = {}
    missing: list[str] = []
    for name, rows in parsed:
        product = _resolve_product(path, asn_dir, name, rows, level, allow_outside, science_seen)
        if check_members_exist:
            missing += [m.expname for m in product.members if not m.path.is_file()]
        products.append(product)
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise InputError(
            f"{path}: {len(missing)} member file(s) not found next to the association: {shown}. "
            "Members are looked up relative to the association's directory; move the association "
            "next to the data or rebuild it with 'jwstrun asn'."
        )
    return products


def _resolve_product(
    path: Path,
    asn_dir: Path,
    name: str,
    rows: list[tuple[str, str]],
    level: int,
    allow_outside: bool,
    science_seen: dict[Path, str],
) -> AsnProduct:
    """One product's members resolved and checked (exptypes, duplicates, science count);
    ``science_seen`` (member path -> product) carries science members across products."""
    allowed = ("science", "background") if level == 2 else ("science",)
    members = []
    in_product: set[Path] = set()
    for expname, exptype in rows:
        if exptype not in allowed:
            raise InputError(
                f"{path}: product '{name}': member {expname} has exptype '{exptype}'; a "
                f"Level-{level} image association takes {' or '.join(allowed)} members."
            )
        member_path = _resolve_member(path, asn_dir, expname, allow_outside)
        if member_path in in_product:
            raise InputError(
                f"{path}: product '{name}' lists {expname} more than once. Remove the duplicate."
            )
        in_product.add(member_path)
        if exptype == "science":
            if member_path in science_seen:
                raise InputError(
                    f"{path}: {expname} is a science member of both '{science_seen[member_path]}' "
                    f"and '{name}'; it would be processed twice. Remove the duplicate."
                )
            science_seen[member_path] = name
        members.append(AsnMember(expname, exptype, member_path))
    n_science = sum(m.exptype == "science" for m in members)
    if level == 2 and n_science != 1:
        raise InputError(
            f"{path}: product '{name}' has {n_science} science members; a Level-2 product "
            "has exactly one (calwebb_image2 would use only the first)."
        )
    if level == 3 and n_science == 0:
        raise InputError(f"{path}: product '{name}' has no science members.")
    return AsnProduct(name, members)
