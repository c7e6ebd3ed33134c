#!/usr/bin/env python3
"""Independent checks of kiln's SBOM output, used by tests/sbom.rs.

  validate-sbom.py schema FILE...   validate SPDX 2.3 (*.spdx.json) and CycloneDX 1.5 (*.cdx.json)
                                    documents against the official JSON schemas
  validate-sbom.py deb822 FILE...   parse Debian control files with python-debian and print
                                    [{Package, Version, Architecture, Source}] as JSON

The schemas are the copies shipped in the lib4sbom wheel (SPDX 2.3 and CycloneDX 1.5 with the
spdx/jsf schemas it references), validated with the jsonschema package; nothing here comes from
kiln. SPDX documents are also checked by spdx-tools' validator. Requirements: pip install jsonschema lib4sbom python-debian spdx-tools
"""

import json
import os
import sys

REQUIREMENTS = "pip install jsonschema lib4sbom python-debian spdx-tools"


def need(module):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        sys.exit(f"validate-sbom: missing Python module {module!r} ({e}); install with: {REQUIREMENTS}")


def schema_dir():
    lib4sbom = need("lib4sbom")
    return os.path.join(os.path.dirname(lib4sbom.__file__), "schemas")


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def validators():
    jsonschema = need("jsonschema")
    referencing = need("referencing")
    base = schema_dir()
    spdx = load(os.path.join(base, "spdx", "2.3-schema.json"))
    cdx_dir = os.path.join(base, "cyclonedx")
    cdx = load(os.path.join(cdx_dir, "bom-1.5.schema.json"))
    # bom-1.5 refers to spdx.schema.json and jsf-0.82.schema.json relative to its $id.
    resources = []
    for name in ("bom-1.5.schema.json", "spdx.schema.json", "jsf-0.82.schema.json"):
        doc = load(os.path.join(cdx_dir, name))
        res = referencing.Resource.from_contents(doc, default_specification=referencing.jsonschema.DRAFT7)
        resources.append((doc.get("$id", name), res))
    registry = referencing.Registry().with_resources(resources)
    return {
        "spdx": jsonschema.Draft7Validator(spdx, format_checker=jsonschema.FormatChecker()),
        "cdx": jsonschema.Draft7Validator(cdx, registry=registry, format_checker=jsonschema.FormatChecker()),
    }


def spdx_semantics(path):
    """What the schema cannot say (every referenced SPDX id and LicenseRef defined, license
    expressions parse, ...), checked by the SPDX project's own spdx-tools."""
    need("spdx_tools")
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    messages = validate_full_spdx_document(parse_file(path), "SPDX-2.3")
    for m in messages[:20]:
        print(f"{path}: spdx-tools: {m.validation_message}")
    return messages


def cmd_schema(paths):
    v = validators()
    failed = 0
    for path in paths:
        doc = load(path)
        if path.endswith(".spdx.json"):
            kind = "spdx"
            if doc.get("spdxVersion") != "SPDX-2.3":
                print(f"{path}: spdxVersion is {doc.get('spdxVersion')!r}, expected 'SPDX-2.3'")
                failed += 1
        elif path.endswith(".cdx.json"):
            kind = "cdx"
            if doc.get("specVersion") != "1.5":
                print(f"{path}: specVersion is {doc.get('specVersion')!r}, expected '1.5'")
                failed += 1
        else:
            sys.exit(f"validate-sbom: {path}: not *.spdx.json or *.cdx.json")
        errors = sorted(v[kind].iter_errors(doc), key=lambda e: list(e.absolute_path))
        for e in errors[:20]:
            where = "/".join(str(p) for p in e.absolute_path)
            print(f"{path}: /{where}: {e.message[:300]}")
        failed += len(errors)
        if kind == "spdx" and not errors:
            errors = spdx_semantics(path)
            failed += len(errors)
        if not errors:
            print(f"{path}: valid {kind}")
    sys.exit(1 if failed else 0)


def cmd_deb822(paths):
    deb822 = need("debian.deb822")
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            paras = list(deb822.Deb822.iter_paragraphs(f))
        if len(paras) != 1:
            sys.exit(f"validate-sbom: {path}: {len(paras)} paragraphs, expected 1")
        p = paras[0]
        out.append({k: p.get(k) for k in ("Package", "Version", "Architecture", "Source", "Status")})
    json.dump(out, sys.stdout, indent=1)
    print()


def main(argv):
    if len(argv) < 2 or argv[0] not in ("schema", "deb822"):
        sys.exit(__doc__)
    {"schema": cmd_schema, "deb822": cmd_deb822}[argv[0]](argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
