"""One key configured twice (its SHA-256 twice, or the key and its digest), or two entries
with one name, are refused by ``crisiswatch check-config`` and at start, naming both
entries: the last entry won silently (an admin key logged in as the viewer configured after
it), and the audit log, which names the key that acted, could not tell two names apart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api.auth import KeyRing, hash_key
from api.cli import main
from api.settings import ConfigError, load_settings

KEY = "ops-key-0123456789abcdef"
OTHER = "other-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("CRISISWATCH_")]:
        monkeypatch.delenv(name)


def _config(tmp_path: Path, *entries: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  keys:\n" + "".join(f"    - {e}\n" for e in entries))
    return path


def test_one_key_hashed_twice_is_refused_naming_both_entries(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f'{{name: ops, key_sha256: "{hash_key(KEY)}", role: admin}}',
        f'{{name: anna, key_sha256: "{hash_key(OTHER)}", role: legal}}',
        f'{{name: other, key_sha256: "{hash_key(KEY).upper()}", role: viewer}}',
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    said = str(refused.value)
    assert "api.keys.0 ('ops', admin) and api.keys.2 ('other', viewer) have the same key" in said
    assert "anna" not in said
    assert hash_key(KEY) not in said.lower()  # nor the digest


def test_a_key_and_its_own_digest_are_one_key(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f"{{name: ops, key: {KEY}, role: admin}}",
        f'{{name: ops-hashed, key_sha256: "{hash_key(KEY)}", role: viewer}}',
    )
    with pytest.raises(ConfigError, match=r"api.keys.0 \('ops', admin\) and api.keys.1"):
        load_settings(path)


def test_two_entries_with_one_name_are_refused(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f'{{name: ops, key_sha256: "{hash_key(KEY)}", role: admin}}',
        f'{{name: ops, key_sha256: "{hash_key(OTHER)}", role: viewer}}',
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    assert "api.keys.0 ('ops', admin) and api.keys.1 ('ops', viewer) have the same name" in str(
        refused.value
    )


def test_check_config_and_run_refuse_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(
        tmp_path,
        f'{{name: ops, key_sha256: "{hash_key(KEY)}", role: admin}}',
        f'{{name: other, key_sha256: "{hash_key(KEY)}", role: viewer}}',
    )
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "OK" not in out
    assert "api.keys.0 ('ops', admin) and api.keys.1 ('other', viewer)" in err

    served: list[object] = []
    monkeypatch.setattr("api.serve.serve_roles", lambda *a, **k: served.append(a) or 0)
    assert main(["run", "--config", str(path)]) == 2
    assert not served
    assert "have the same key" in capsys.readouterr().err


def test_distinct_keys_and_names_pass(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f'{{name: ops, key_sha256: "{hash_key(KEY)}", role: admin}}',
        f'{{name: ops-2026-12, key_sha256: "{hash_key(OTHER)}", role: admin}}',
    )
    assert [k.name for k in load_settings(path).api.keys] == ["ops", "ops-2026-12"]


def test_the_key_ring_refuses_a_key_it_holds() -> None:
    ring = KeyRing()
    ring.add(KEY, "ops", "admin")
    with pytest.raises(ValueError, match="'other' is the same key as 'ops'"):
        ring.add(KEY, "other", "viewer")
    principal = ring.lookup(KEY)
    assert principal is not None and principal.role == "admin"
