"""`engine: auto` / `dtype: auto` by measurement: the choice from scripted calibration results (pure logic), the
CPU identity and the cache's staleness, bad input, and one real calibration of the embedded SmolLM2 (slow)."""

from __future__ import annotations

import json
import sys

import pytest

from cowest.core.errors import ConfigError
from cowest.models import calibrate
from cowest.models.calibrate import Measurement, choose, cpu_identity, cpu_key, native_bf16, pick

EPYC_BF16 = "processor : 0\nmodel name : AMD EPYC\nflags : fpu sse avx2 avx512f avx512_bf16 avx512vl\n" * 2
EPYC_AVX2 = "processor : 0\nmodel name : AMD EPYC 7B12\nflags : fpu sse avx2 fma f16c\n"
XEON_AMX = "model name : Intel(R) Xeon(R) Processor\nflags : avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"

# Measured 2026-12-01 on the 2-core EPYC with AVX512_BF16 (issue 14): the 1.5B, 64 new tokens.
BF16_CPU = [Measurement("llamacpp", "gguf", 1, 24.8), Measurement("hf", "bfloat16", 1, 8.1),
            Measurement("hf", "bfloat16", 16, 79.1), Measurement("hf", "float32", 1, 6.0),
            Measurement("hf", "float32", 16, 20.0)]
# An AVX2-only CPU (cpu-models.md): llama.cpp wins even against batched float32 transformers.
AVX2_CPU = [Measurement("llamacpp", "gguf", 1, 12.2), Measurement("hf", "float32", 1, 2.0),
            Measurement("hf", "float32", 8, 5.2)]


def test_cpu_identity_reads_the_flags_that_matter():
    ident = cpu_identity(EPYC_BF16, threads=2)
    assert ident == {"cpu": "AMD EPYC", "flags": ["avx512_bf16", "avx512f", "avx2"], "threads": 2}
    assert native_bf16(ident) and cpu_key(ident) == "AMD EPYC [avx512_bf16 avx512f avx2] x2"
    assert not native_bf16(cpu_identity(EPYC_AVX2, threads=2))
    assert native_bf16(cpu_identity(XEON_AMX, threads=2))
    # Same model name, other core count: another identity (the rates scale with the cores).
    assert cpu_key(cpu_identity(EPYC_BF16, threads=4)) != cpu_key(ident)


def test_choice_by_batch_size_on_a_bf16_cpu():
    batched = choose(BF16_CPU, 16, "epyc")
    assert (batched.engine, batched.dtype) == ("hf", "bfloat16")
    assert "hf bfloat16 79.1 tok/s at batch 16" in batched.reason and "llamacpp 24.8" in batched.reason
    assert batched.single == "llamacpp gguf"  # one request at a time: llama.cpp
    single = choose(BF16_CPU, 1, "epyc")
    assert (single.engine, single.dtype) == ("llamacpp", "gguf")


def test_choice_on_an_avx2_cpu_is_llamacpp_at_any_batch():
    for batch in (1, 8):
        assert choose(AVX2_CPU, batch, "avx2").engine == "llamacpp"
    # without llama.cpp installed, the candidates are hf float32 only
    assert (choose(AVX2_CPU[1:], 8, "avx2").engine, choose(AVX2_CPU[1:], 8, "avx2").dtype) == ("hf", "float32")


class Script:
    """A measurer returning scripted rates; records what it was asked to measure."""

    def __init__(self, rates: list[Measurement]):
        self.rates, self.calls = rates, []

    def __call__(self, source, todo, threads):
        self.calls.append(todo)
        return [m for m in self.rates if (m.engine, m.dtype, m.batch) in todo]


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COWEST_MODELS_DIR", str(tmp_path / "models"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF fake weights")
    monkeypatch.setattr(calibrate, "engine_installed", lambda e: True)
    return gguf


def test_pick_measures_once_then_reads_the_cache(models_dir, capsys):
    ident = cpu_identity(EPYC_BF16, threads=2)
    script = Script(BF16_CPU)
    c = pick(str(models_dir), "auto", "auto", 16, measurer=script, ident=ident)
    assert (c.engine, c.dtype) == ("hf", "bfloat16")
    assert sorted(script.calls[0]) == sorted([("llamacpp", "gguf", 1), ("hf", "bfloat16", 1), ("hf", "bfloat16", 16),
                                              ("hf", "float32", 1), ("hf", "float32", 16)])
    path = calibrate.calibration_path(str(models_dir))
    assert path.parent.name == "hf" and path.name.endswith(".calibration.json")  # beside the converted weights
    assert cpu_key(ident) in json.loads(path.read_text())["machines"]
    # Second run: nothing measured; a new batch size measures only what it lacks.
    c2 = pick(str(models_dir), "auto", "auto", 16, measurer=script, ident=ident)
    assert c2.as_dict() == c.as_dict() and len(script.calls) == 1
    pick(str(models_dir), "auto", "auto", 64, measurer=Script([Measurement("hf", "bfloat16", 64, 120.4),
                                                               Measurement("hf", "float32", 64, 40.0)]), ident=ident)
    assert "calibrating" in capsys.readouterr().err


def test_calibration_of_another_cpu_is_not_used(models_dir, capsys):
    pick(str(models_dir), "auto", "auto", 16, measurer=Script(BF16_CPU), ident=cpu_identity(EPYC_BF16, threads=2))
    capsys.readouterr()
    other = cpu_identity(EPYC_AVX2, threads=2)
    script = Script(AVX2_CPU + [Measurement("hf", "float32", 16, 5.0)])
    c = pick(str(models_dir), "auto", "auto", 16, measurer=script, ident=other)
    err = capsys.readouterr().err
    assert "measured on another CPU (AMD EPYC [avx512_bf16 avx512f avx2] x2)" in err and "AMD EPYC 7B12" in err
    # no native bf16 here: auto never measures or picks it
    assert all(d != "bfloat16" for _, d, _ in script.calls[0])
    assert c.engine == "llamacpp"
    machines = json.loads(calibrate.calibration_path(str(models_dir)).read_text())["machines"]
    assert len(machines) == 2  # both CPUs kept


def test_explicit_engine_and_dtype_are_kept_and_checked(models_dir, monkeypatch, capsys):
    avx2 = cpu_identity(EPYC_AVX2, threads=2)
    never = Script([])
    c = pick(str(models_dir), "hf", "bfloat16", 8, measurer=never, ident=avx2)
    assert (c.engine, c.dtype, never.calls) == ("hf", "bfloat16", []) and "set in the config" in c.reason
    assert "without native bf16" in capsys.readouterr().err  # allowed, with a warning
    # engine hf + dtype auto: only the dtypes are measured
    script = Script(BF16_CPU)
    c = pick(str(models_dir), "hf", "auto", 16, measurer=script, ident=cpu_identity(EPYC_BF16, threads=2))
    assert c.engine == "hf" and all(e == "hf" for e, _, _ in script.calls[0])
    monkeypatch.setattr(calibrate, "engine_installed", lambda e: e == "hf")
    with pytest.raises(ConfigError, match=r"engine 'llamacpp' is not installed.*pip install -e '\.\[llamacpp\]'"):
        pick(str(models_dir), "llamacpp", "auto", 1, measurer=never, ident=avx2)
    # auto falls back to what is installed
    c = pick(str(models_dir), "auto", "float32", 8, measurer=Script(AVX2_CPU), ident=avx2)
    assert (c.engine, c.dtype) == ("hf", "float32")


def test_llama_cpp_that_does_not_import_is_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # installed or not, it does not import
    assert not calibrate.engine_installed("llamacpp")


def test_auto_without_llama_cpp_falls_back_and_says_so(models_dir, monkeypatch):
    monkeypatch.setattr(calibrate, "engine_installed", lambda e: e == "hf")
    for ident, rates, batch, want in ((cpu_identity(EPYC_BF16, threads=2), BF16_CPU, 1, "bfloat16"),
                                      (cpu_identity(EPYC_AVX2, threads=2), AVX2_CPU, 8, "float32")):
        script = Script(rates)
        c = pick(str(models_dir), "auto", "auto", batch, measurer=script, ident=ident)
        assert (c.engine, c.dtype) == ("hf", want)
        assert all(e == "hf" for call in script.calls for e, _, _ in call)  # llama.cpp is not measured
        assert "llama.cpp is not installed" in c.reason and "pip install -e '.[llamacpp]'" in c.reason


def test_unreadable_calibration_is_measured_again(models_dir, capsys):
    path = calibrate.calibration_path(str(models_dir))
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    script = Script(AVX2_CPU)
    pick(str(models_dir), "auto", "float32", 8, measurer=script, ident=cpu_identity(EPYC_AVX2, threads=2))
    assert script.calls and "unreadable" in capsys.readouterr().err


@pytest.mark.slow
def test_real_calibration_of_smollm2(tmp_path, monkeypatch):
    """Measures llama.cpp and transformers on this machine (seconds), caches it, and loads the chosen engine."""
    pytest.importorskip("torch")
    from cowest.core.config import ModelConfig
    from cowest.models.base import load_backend

    monkeypatch.setenv("COWEST_MODELS_DIR", str(tmp_path / "models"))
    from cowest.models.embedded import gguf_path

    gguf = str(gguf_path("smollm2-135m"))
    ident = cpu_identity()
    c = pick(gguf, "auto", "auto", 8)
    rates = {(m["engine"], m["dtype"], m["batch"]): m["tok_s"] for m in c.measurements}
    expected = {("hf", "float32", 1), ("hf", "float32", 8)}
    expected |= {("hf", "bfloat16", 1), ("hf", "bfloat16", 8)} if native_bf16(ident) else set()
    expected |= {("llamacpp", "gguf", 1)} if calibrate.engine_installed("llamacpp") else set()
    assert set(rates) == expected and all(r > 1 for r in rates.values())
    # No weights were converted to calibrate: the engine that loses costs nothing on disk.
    from cowest.models.hf_loading import gguf_cache_dir

    assert not gguf_cache_dir(gguf).exists()
    b = load_backend(ModelConfig(spec="embedded/smollm2-135m", batch_size=8, dtype="auto"))
    try:
        assert b.engine_choice["engine"] == c.engine and b.engine_choice["reason"] == c.reason
        assert b.identity.startswith(c.engine)
    finally:
        b.close()


def test_a_test_needing_llama_cpp_skips_naming_it_and_its_install_command(monkeypatch):
    from engines import needs_llama_cpp

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(pytest.skip.Exception, match=r"llama_cpp is not installed; run: pip install -e '\.\[llamacpp\]'"):
        needs_llama_cpp()


@pytest.mark.slow
def test_models_prepare_calibrates_and_converts_ahead_of_the_first_run(tmp_path, monkeypatch, capsys):
    """`cowest models --prepare` (what scripts/setup.sh runs) does a model's first-run work: the calibration and the
    converted weights the chosen engine loads; a second call finds both and measures nothing."""
    pytest.importorskip("torch")
    from cowest.cli import main
    from cowest.models.calibrate import calibration_path
    from cowest.models.embedded import gguf_path
    from cowest.models.hf_loading import gguf_cache_dir

    monkeypatch.setenv("COWEST_MODELS_DIR", str(tmp_path / "models"))
    gguf = gguf_path("smollm2-135m")
    assert main(["models", "--prepare", "smollm2-135m"]) == 0
    out, err = capsys.readouterr()
    assert "calibrating SmolLM2-135M" in err and calibration_path(gguf).is_file()
    choice = next(line for line in out.splitlines() if line.startswith("smollm2-135m: "))
    engine, dtype = choice.split()[1:3]
    if engine == "hf":  # the copy it runs, and the float32 one a weak model trains on
        for d in {dtype, "float32"}:
            assert (gguf_cache_dir(gguf, d) / "config.json").is_file(), d
    assert main(["models", "--prepare", "smollm2-135m"]) == 0
    assert "calibrating" not in capsys.readouterr().err
    assert main(["models", "--prepare", "no-such-model"]) != 0
    err = capsys.readouterr().err
    assert "no-such-model" in err and "smollm2-135m" in err and "Traceback" not in err
