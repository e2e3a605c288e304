#!/bin/sh
# Build llama-cpp-python VERSION with llama.cpp's AMX kernels into the environment of PYTHON: its sdist, patched with
# scripts/llamacpp_amx.patch (the tile config in static storage, ggml-org/llama.cpp#26954), built with CMAKE_ARGS
# from the environment (scripts/llamacpp_cmake_args.py --amx). Usage: llamacpp_amx_build.sh PYTHON VERSION
set -eu
python=$1
version=$2
patch_file=$(cd "$(dirname "$0")" && pwd)/llamacpp_amx.patch
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
tar xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
patch -s -p1 -d "$work/llama_cpp_python-$version" < "$patch_file"
"$python" -m pip install -q --no-cache-dir --force-reinstall --no-deps "$work/llama_cpp_python-$version"
