"""Report files: atomic writes, the schema version, readers refusing other versions."""
import json
import os

import pytest

from fla_check.errors import FlaCheckError, ReportError
from fla_check.report.storage import (SCHEMA_VERSION, default_report_path, dumps, read_report, read_run_report,
                                      write_report)


def test_write_report_is_atomic_and_stamped(tmp_path):
    path = tmp_path / "sub" / "r.json"
    write_report({"a": 1}, path)
    assert read_report(path) == {"schema_version": SCHEMA_VERSION, "a": 1}
    assert next(iter(json.loads(path.read_text()))) == "schema_version"  # first key: visible at the top
    with pytest.raises(ValueError):
        write_report({"a": float("nan")}, path)  # not valid JSON: the old file stays intact
    assert read_report(path)["a"] == 1
    assert os.listdir(path.parent) == ["r.json"]


def test_json_print_is_stamped():
    assert json.loads(dumps({"kind": "run", "schema_version": 99})) == {"schema_version": SCHEMA_VERSION, "kind": "run"}


def test_unversioned_reports_read_as_version_1(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"op": "gla", "cases": []}))
    assert SCHEMA_VERSION == 1 and read_run_report(path) == {"op": "gla", "cases": []}


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, "1", None])
def test_other_schema_versions_are_refused_naming_both(tmp_path, version):
    path = tmp_path / "new.json"
    path.write_text(json.dumps({"schema_version": version, "op": "gla", "cases": []}))
    with pytest.raises(ReportError) as err:
        read_run_report(path)
    assert f"schema version {version!r}" in str(err.value) and f"schema version {SCHEMA_VERSION} only" in str(err.value)
    assert isinstance(err.value, FlaCheckError) and err.value.usage


@pytest.mark.parametrize("text, why", [("{", "cannot read report"), ("[1]", "not a JSON object"),
                                       ('{"kind": "sweep-mask-values"}', "not a fla-check run report")])
def test_unreadable_reports(tmp_path, text, why):
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(ReportError, match=why):
        read_run_report(path)


def test_default_report_path(tmp_path):
    p = default_report_path("gla", root=tmp_path)
    assert p.parent == tmp_path and p.name.startswith("run-gla-") and p.suffix == ".json"
