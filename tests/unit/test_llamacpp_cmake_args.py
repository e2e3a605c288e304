"""scripts/llamacpp_cmake_args.py: the llama.cpp build flags follow the CPU's flags (never more)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "llamacpp_cmake_args.py"
SAPPHIRE = ("fpu sse4_2 avx avx2 fma f16c bmi2 avx_vnni avx512f avx512cd avx512vl avx512dq avx512bw avx512vbmi "
            "avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_int8 amx_bf16")
HASWELL = "fpu sse4_2 avx avx2 fma f16c bmi2"


def _script():
    spec = importlib.util.spec_from_file_location("llamacpp_cmake_args", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cpuinfo(flags: str) -> str:
    return f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n"


def test_avx512_cpu_gets_avx512_vnni_bf16_and_never_amx():
    script = _script()
    args = script.cmake_args(script.cpu_flags(_cpuinfo(SAPPHIRE)))
    for option in ("GGML_NATIVE=OFF", "GGML_AVX512=ON", "GGML_AVX512_VNNI=ON", "GGML_AVX512_BF16=ON",
                   "GGML_AVX_VNNI=ON", "GGML_AVX2=ON"):
        assert f"-D{option}" in args.split()
    assert "AMX" not in args


def test_avx2_cpu_gets_no_avx512():
    script = _script()
    flags = script.cpu_flags(_cpuinfo(HASWELL))
    args = script.cmake_args(flags).split()
    assert "-DGGML_AVX2=ON" in args and "-DGGML_AVX512=OFF" in args and "-DGGML_AVX512_VNNI=OFF" in args
    assert script.expected(flags) == ["AVX", "AVX2", "FMA", "F16C", "BMI2"]


def test_old_cpu_gets_neither_avx2_nor_fma():
    script = _script()
    args = script.cmake_args(script.cpu_flags(_cpuinfo("fpu sse4_2 avx"))).split()
    assert "-DGGML_AVX=ON" in args and "-DGGML_AVX2=OFF" in args and "-DGGML_FMA=OFF" in args


def test_missing_names_the_features_a_generic_build_lacks():
    script = _script()
    flags = script.cpu_flags(_cpuinfo(SAPPHIRE))
    generic = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | REPACK = 1 | "
    assert script.missing(flags, generic) == ["AVX_VNNI", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"]
    full = generic + "AVX_VNNI = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 |"
    assert script.missing(flags, full) == []


def test_amx_options_only_with_amx_and_only_on_an_amx_cpu():
    script = _script()
    sapphire, haswell = script.cpu_flags(_cpuinfo(SAPPHIRE)), script.cpu_flags(_cpuinfo(HASWELL))
    args = script.cmake_args(sapphire, amx=True).split()
    assert {"-DGGML_AMX_TILE=ON", "-DGGML_AMX_INT8=ON", "-DGGML_AMX_BF16=ON", "-DGGML_AVX512_VNNI=ON"} <= set(args)
    assert "-DGGML_AMX_INT8=OFF" in script.cmake_args(haswell, amx=True).split()
    assert script.cmake_args(haswell, amx=True).replace(" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF",
                                                         "") == script.cmake_args(haswell)
    info = ("CPU : AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | "
            "AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 |")
    assert script.missing(sapphire, info) == [] and script.missing(sapphire, info, amx=True) == ["AMX_INT8"]
    assert script.missing(sapphire, info.replace("LLAMAFILE", "AMX_INT8 = 1 | LLAMAFILE"), amx=True) == []


def test_openmp_is_always_off_and_an_openmp_build_fails_the_check():
    script = _script()
    for flags in (script.cpu_flags(_cpuinfo(SAPPHIRE)), script.cpu_flags(_cpuinfo(HASWELL)), None):
        for amx in (False, True):
            assert "-DGGML_OPENMP=OFF" in script.cmake_args(flags, amx=amx).split()
    assert script.unwanted("CPU : AVX2 = 1 | OPENMP = 1 | REPACK = 1 |") == ["OPENMP"]
    assert script.unwanted("CPU : AVX2 = 1 | REPACK = 1 |") == []
