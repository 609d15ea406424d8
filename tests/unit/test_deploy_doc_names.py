"""Names the operator reads in prose (the README's "Production" section, deploy/README.md,
the comments and annotations under deploy/) against the code: test_deploy_docs checks the
``CRISISWATCH_*`` variables, alert names, commands and paths; this checks the rest.

- every ``crisiswatch_*`` metric name is a series the code exports (``core.metrics``);
- every dotted setting (``bus.stop_timeout``, ``scorer.classifier.timeout_s``) whose first
  level is a section of ``api.settings.Settings`` walks the settings' fields to the end
  (module paths such as ``api.settings.load_settings`` and file names are not settings).
"""

from __future__ import annotations

import re

from api.settings import Settings
from tests.deploy_support import ROOT, exported_series
from tests.unit.test_deploy_docs import is_setting, operator_texts

SERIES = exported_series()
METRIC = re.compile(r"\bcrisiswatch_[a-z0-9_]*[a-z0-9]\b")
DOTTED = re.compile(r"(?<![\w./$-])([a-z_]+(?:\.[a-z_0-9]+)+)(?![\w/-])")
FILE_SUFFIXES = (".yaml", ".yml", ".json", ".py", ".md", ".txt", ".toml")


def metric_problems(text: str) -> list[str]:
    """``crisiswatch_*`` names in ``text`` that no crisiswatch process exports."""
    return sorted({n for n in METRIC.findall(text) if n not in SERIES})


def _is_module_path(parts: list[str]) -> bool:
    """``api.settings`` or ``api.settings.load_settings``: a package's module."""
    for end in range(len(parts), 1, -1):
        path = ROOT.joinpath(*parts[:end])
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return True
    return False


def setting_problems(text: str) -> list[str]:
    """Dotted names in ``text`` that start at a settings section and are no setting."""
    sections = set(Settings.model_fields)
    problems = set()
    for name in DOTTED.findall(text):
        parts = name.split(".")
        if parts[0] not in sections or name.endswith(FILE_SUFFIXES) or _is_module_path(parts):
            continue
        if not is_setting(parts):
            problems.add(name)
    return sorted(problems)


def test_the_name_checks_can_fail() -> None:
    assert metric_problems("see `crisiswatch_bus_consumer_lag` and crisiswatch_source_up") == []
    assert metric_problems("`crisiswatch_bus_consumer_lags`") == ["crisiswatch_bus_consumer_lags"]
    assert metric_problems("a crisiswatch_deliveries_total{outcome}") == []
    assert setting_problems("`bus.stop_timeout`, `scorer.classifier.timeout_s`") == []
    assert setting_problems("`bus.stop_timeout_s` and `api.metric_token`.") == [
        "api.metric_token",
        "bus.stop_timeout_s",
    ]
    # modules, files, other tools' names: not settings
    assert setting_problems("`api.settings.load_settings`, api.yaml, `k8s.io`, a.b") == []


def test_metric_names_in_the_operator_texts_exist() -> None:
    problems = [
        f"{where}: {name}"
        for where, text in operator_texts().items()
        for name in metric_problems(text)
    ]
    assert not problems, f"no such metric: {problems}"


def test_settings_named_in_the_operator_texts_exist() -> None:
    problems = [
        f"{where}: {name}"
        for where, text in operator_texts().items()
        for name in setting_problems(text)
    ]
    assert not problems, f"no such setting: {problems}"
