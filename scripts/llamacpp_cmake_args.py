"""The CMAKE_ARGS that build llama-cpp-python's llama.cpp for this machine's CPU, and a check of the installed build.

    CMAKE_ARGS="$(python scripts/llamacpp_cmake_args.py)" pip install 'tuneforge[llamacpp]'
    python scripts/llamacpp_cmake_args.py --amx      # the same plus llama.cpp's AMX kernels, on a CPU with AMX
    python scripts/llamacpp_cmake_args.py --check    # exit 1 when the installed build lacks one of them

llama.cpp's default build (GGML_NATIVE, -march=native) crashed here on every GGUF; a GGML_NATIVE=OFF build
enables only what is named. This names each x86 instruction set extension llama.cpp has kernels for that
/proc/cpuinfo lists (AVX2/FMA/F16C, AVX512 F/CD/VL/DQ/BW, VBMI, VNNI, BF16, AVX-VNNI), so the same line is
safe on any x86-64 and fast on a recent Xeon. AMX only with --amx, for a source tree patched with
scripts/llamacpp_amx.patch (see AMX_REASON; ``make llamacpp`` builds it and falls back to the line without AMX
when llama.cpp's own GGUF does not run on it). Elsewhere (no /proc/cpuinfo, another architecture) it prints only
-DGGML_NATIVE=OFF and -DGGML_OPENMP=OFF.

Always -DGGML_OPENMP=OFF (see OPENMP_REASON): ggml's own thread pool instead of OpenMP.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

AMX_REASON = ("ggml's AMX kernel in llama-cpp-python 0.3.36 stops on an illegal instruction (tilezero in "
              "tinygemm_kernel_amx): GCC drops the stores into the tile config on the stack, so palette 0 is loaded "
              "(ggml-org/llama.cpp#26954); scripts/llamacpp_amx.patch keeps the config in static storage")
OPENMP_REASON = ("torch's wheel brings its own libgomp.so.1, and an OpenMP llama.cpp links the same soname, so both "
                 "share one OpenMP runtime; once torch's pool has threads, libgomp counts more threads than cores and "
                 "stops spinning at barriers: one decode step of SmolLM2-135M took 31 ms instead of 6 (AMX build, "
                 "2 threads, torch at its default 2 threads); with ggml's own thread pool 6 ms either way")
SEQ_LORA_SYMBOL = "llama_set_seq_lora_mask"
SEQ_LORA_REASON = (f"per-sequence LoRA ({SEQ_LORA_SYMBOL}, scripts/llamacpp_seq_lora.patch: without it a batch holds one "
                   "adapter's sequences)")
BASE = ("-DGGML_NATIVE=OFF", "-DGGML_OPENMP=OFF")
# AMX options (cmake option, /proc/cpuinfo flags it needs, name in llama_print_system_info() or None); with --amx.
AMX_FEATURES = (
    ("GGML_AMX_TILE", ("amx_tile",), None),
    ("GGML_AMX_INT8", ("amx_tile", "amx_int8"), "AMX_INT8"),
    ("GGML_AMX_BF16", ("amx_tile", "amx_bf16"), None),
)
# (cmake option, /proc/cpuinfo flags it needs, name in llama_print_system_info() or None)
FEATURES = (
    ("GGML_SSE42", ("sse4_2",), None),
    ("GGML_AVX", ("avx",), "AVX"),
    ("GGML_AVX2", ("avx2",), "AVX2"),
    ("GGML_FMA", ("fma",), "FMA"),
    ("GGML_F16C", ("f16c",), "F16C"),
    ("GGML_BMI2", ("bmi2",), "BMI2"),
    ("GGML_AVX_VNNI", ("avx_vnni",), "AVX_VNNI"),
    ("GGML_AVX512", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"), "AVX512"),
    ("GGML_AVX512_VBMI", ("avx512f", "avx512vbmi"), "AVX512_VBMI"),
    ("GGML_AVX512_VNNI", ("avx512f", "avx512_vnni"), "AVX512_VNNI"),
    ("GGML_AVX512_BF16", ("avx512f", "avx512_bf16"), "AVX512_BF16"),
)


def cpu_flags(cpuinfo: str) -> set[str]:
    """The flags of the first processor in the text of /proc/cpuinfo."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def _features(amx: bool) -> tuple[tuple[str, tuple[str, ...], str | None], ...]:
    return FEATURES + AMX_FEATURES if amx else FEATURES


def chosen(flags: set[str], *, amx: bool = False) -> dict[str, bool]:
    """cmake option -> ON/OFF for a CPU with ``flags`` (``amx``: the AMX options too)."""
    return {option: all(flag in flags for flag in needed) for option, needed, _ in _features(amx)}


def cmake_args(flags: set[str] | None, *, amx: bool = False) -> str:
    """The CMAKE_ARGS line for ``flags`` (None: not an x86 Linux machine; ``amx``: AMX kernels where the CPU has
    AMX, for a source tree patched with scripts/llamacpp_amx.patch)."""
    if flags is None:
        return " ".join(BASE)
    options = chosen(flags, amx=amx)
    return " ".join([*BASE, *(f"-D{option}={'ON' if on else 'OFF'}" for option, on in options.items())])


def expected(flags: set[str], *, amx: bool = False) -> list[str]:
    """Names ``llama_print_system_info()`` must show as ``NAME = 1`` for a build made with ``cmake_args``."""
    options = chosen(flags, amx=amx)
    return [name for option, _, name in _features(amx) if name and options[option]]


def missing(flags: set[str], system_info: str, *, amx: bool = False) -> list[str]:
    """The expected features that ``system_info`` (llama_print_system_info()) does not show."""
    shown = {part.strip() for part in system_info.replace("CPU :", "|").split("|")}
    return [name for name in expected(flags, amx=amx) if f"{name} = 1" not in shown]


def unwanted(system_info: str) -> list[str]:
    """What ``system_info`` shows that ``cmake_args`` turns off: ``OPENMP`` (see OPENMP_REASON)."""
    shown = {part.strip() for part in system_info.replace("CPU :", "|").split("|")}
    return ["OPENMP"] if "OPENMP = 1" in shown else []


def local_flags() -> set[str] | None:
    """This machine's CPU flags, or None off x86 Linux."""
    path = Path("/proc/cpuinfo")
    if platform.machine().lower() not in ("x86_64", "amd64") or not path.exists():
        return None
    return cpu_flags(path.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="check the installed llama-cpp-python instead (exit 1 when a feature is missing)")
    parser.add_argument("--amx", action="store_true",
                        help="AMX kernels too, where the CPU has AMX (a source tree patched with llamacpp_amx.patch)")
    args = parser.parse_args()
    flags = local_flags()
    if not args.check:
        print(cmake_args(flags, amx=args.amx))
        return 0
    try:
        import llama_cpp
    except ImportError:
        print(f"llama-cpp-python is not installed in {sys.executable}: run this with the Python that serves "
              "(.venv/bin/python), or install it with 'make llamacpp'", file=sys.stderr)
        return 1
    info = llama_cpp.llama_print_system_info().decode()
    lacking = (missing(flags, info, amx=args.amx) if flags is not None else []) + \
        [f"GGML_{name}=OFF ({OPENMP_REASON})" for name in unwanted(info)] + \
        ([] if hasattr(llama_cpp.llama_cpp._lib, SEQ_LORA_SYMBOL) else [SEQ_LORA_REASON])
    if lacking:
        remedy = (f'CMAKE_ARGS="{cmake_args(flags, amx=args.amx)}" sh scripts/llamacpp_build.sh {sys.executable} '
                  "0.3.36 (or 'make llamacpp'), which builds the sdist patched with scripts/llamacpp_*.patch")
        print(f"the installed llama.cpp lacks {'; '.join(lacking)} ({info.strip()}): rebuild it with {remedy}",
              file=sys.stderr)
        return 1
    print(f"llama.cpp build has the CPU's features: {info.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
