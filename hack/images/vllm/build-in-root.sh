#!/bin/bash
# Runs inside the image's root filesystem (chroot, no network): installs vLLM 0.11.0's CPU requirements
# into /opt/venv from the downloaded wheels, builds vLLM's CPU extension from its PyPI sdist as
# docker/Dockerfile.cpu does (`VLLM_TARGET_DEVICE=cpu python3 setup.py bdist_wheel`), installs the
# wheel and removes the Python packages only the build needed.
set -euo pipefail
cd /opt/build
pip=(/opt/venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --no-index --find-links /opt/build/wheels)
python3 -m venv /opt/venv
"${pip[@]}" -r vllm-0.11.0/requirements/common.txt -r requirements-cpu.txt -c constraints.txt
"${pip[@]}" -c constraints-build.txt cmake setuptools-scm wheel

# PyPI's torch is the CUDA build, and its CMake config refuses to configure without a CUDA toolkit and
# names torch::cudart in its targets' link interface. The extension is CPU code and links none of it:
# for the build only, an empty torch::cudart stands in and the refusal is skipped; the file is restored.
caffe2=/opt/venv/lib/python3.11/site-packages/torch/share/cmake/Caffe2/Caffe2Config.cmake
cp "$caffe2" caffe2.orig
sed -i 's/^  if(ON AND NOT CAFFE2_USE_CUDA)/  if(NOT TARGET torch::cudart)\n    add_library(torch::cudart INTERFACE IMPORTED)\n  endif()\n  if(OFF AND NOT CAFFE2_USE_CUDA)/' "$caffe2"
grep -q 'add_library(torch::cudart INTERFACE IMPORTED)' "$caffe2"
# AVX2 kernels: the AVX512 build also needs oneDNN, which CMake clones from GitHub (unreachable here);
# AVX2 code runs on AVX512 machines too. Two compile jobs, niced: the machine has two cores.
# setup.py finds cmake and ninja on PATH; its log is long, so only a failure shows its end.
if ! (cd vllm-0.11.0 && env PATH="/opt/venv/bin:$PATH" VLLM_TARGET_DEVICE=cpu VLLM_CPU_DISABLE_AVX512=true MAX_JOBS=2 \
      nice -n 10 /opt/venv/bin/python setup.py bdist_wheel > /opt/build/setup.log 2>&1); then
  tail -n 60 /opt/build/setup.log >&2
  exit 1
fi
cp caffe2.orig "$caffe2"
# The wheel's metadata asks for torch==2.8.0+cpu and triton==3.2.0, which PyPI does not have (requirements-cpu.txt).
"${pip[@]}" --no-deps vllm-0.11.0/dist/vllm-0.11.0+cpu-*.whl
/opt/venv/bin/pip uninstall --yes --quiet --disable-pip-version-check cmake setuptools-scm wheel
/opt/venv/bin/python -c 'import importlib.metadata as m, torch, vllm._C; v = m.version("vllm"); assert v == "0.11.0+cpu", v'
