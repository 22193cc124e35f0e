#!/usr/bin/env bash
# llama.cpp from the llama-cpp-python sdist, with gguf-embed's patches (patches/llama.cpp/*.patch).
#
#   tools/llama_build.sh patch SDIST_DIR                  apply the patches (again: a no-op)
#   tools/llama_build.sh libs SDIST_DIR OUT_DIR [-D...]    also build libllama and libggml* into OUT_DIR/bin,
#                                                          for LLAMA_CPP_LIB_PATH=OUT_DIR/bin
#
# The libs build is llama.cpp alone (no Python package, no tools), e.g. with -DGGML_VULKAN=on or
# -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90; llama-cpp-python's Python code loads it in place of
# its own copy. A patch that does not apply is one line and a failure, never a silent unpatched build.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?usage: llama_build.sh patch|libs SDIST_DIR [OUT_DIR] [cmake flags]}
sdist=${2:?the extracted llama-cpp-python sdist}
llama="$sdist/vendor/llama.cpp"
[ -f "$llama/CMakeLists.txt" ] || { echo "no llama.cpp source in $sdist (expected vendor/llama.cpp)" >&2; exit 1; }

for p in "$here"/patches/llama.cpp/*.patch; do
  [ -e "$p" ] || continue
  if patch -p1 -R -s -f --dry-run -d "$llama" < "$p" >/dev/null 2>&1; then
    continue  # applied before
  elif patch -p1 -s -f --dry-run -d "$llama" < "$p" >/dev/null 2>&1; then
    patch -p1 -s -f -d "$llama" < "$p"
  else
    echo "patches/llama.cpp/$(basename "$p") does not apply to $llama (written for llama-cpp-python 0.3.36's llama.cpp; after a patch changes, start from a fresh source: rm -rf $sdist)" >&2
    exit 1
  fi
done
[ "$cmd" = patch ] && exit 0
[ "$cmd" = libs ] || { echo "unknown step $cmd (patch or libs)" >&2; exit 1; }

out=${3:?the build folder}
shift 3
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$llama" -B "$out" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF "$@" >/dev/null
cmake --build "$out" --target llama --parallel "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
ls "$out"/bin/libllama.* >/dev/null
