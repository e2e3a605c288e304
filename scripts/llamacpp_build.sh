#!/bin/sh
# Build llama-cpp-python VERSION into the environment of PYTHON from its sdist, patched with
#   scripts/llamacpp_amx.patch      the AMX tile config in static storage (ggml-org/llama.cpp#26954; unpatched, the
#                                   AMX kernels crash on an illegal instruction)
#   scripts/llamacpp_seq_lora.patch per-sequence LoRA: llama_set_seq_lora_mask, so one batch holds the sequences
#                                   of several adapters (tuneforge.serving.llamacpp_adapters)
# with CMAKE_ARGS from the environment (scripts/llamacpp_cmake_args.py [--amx]). Usage: llamacpp_build.sh PYTHON VERSION
set -eu
python=$1
version=$2
scripts=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
tar xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
for patch_file in "$scripts/llamacpp_amx.patch" "$scripts/llamacpp_seq_lora.patch"; do
    patch -s -p1 -d "$work/llama_cpp_python-$version" < "$patch_file"
done
"$python" -m pip install -q --no-cache-dir --force-reinstall --no-deps "$work/llama_cpp_python-$version"
# its requirements (diskcache, jinja2, ...): llama-cpp-python itself is satisfied now, nothing is rebuilt
"$python" -m pip install -q "llama-cpp-python==$version"
