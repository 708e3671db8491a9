#!/bin/bash
# Builds .dev/site.tar.xz: what benches/gpu/run.sh needs on a lent GPU machine whose image has
# CUDA 13 only and no package index (this workplace's H200s): faiss-gpu 1.15.1 (Meta's CUDA 12
# wheel) with only its sm_90 code kept (the other architectures' payloads zeroed, so it compresses
# under the 64 MiB transfer limit), the CUDA 12 runtime, a libcublas.so.12 that forwards faiss's
# eight cuBLAS calls to the image's libcublas.so.13 (cublas12_shim.c), empty libcublasLt.so.12 /
# libcurand.so.10 (faiss links them but calls nothing in them), polars, and interleaf's native
# module (stripped). Run here (x86-64, Python any), then on the GPU machine:
#   device run: bash .dev/run.sh   with carry [".dev"]
# .dev/ must be git-ignored (echo /.dev/ >> .git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/../.."
W=$(mktemp -d); trap 'rm -rf $W' EXIT
POLARS=$(python3 -c "import polars; print(polars.__version__)")
pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$W/whl" faiss-gpu==1.15.1 nvidia-cuda-runtime-cu12==12.9.79 \
  "polars==$POLARS" "polars-runtime-32==$POLARS"
S=$W/site; mkdir -p "$S/native" "$S/nvidia/cublas/lib" "$S/nvidia/curand/lib"
for w in "$W"/whl/*.whl; do unzip -q -o "$w" -d "$S"; done
rm -rf "$S"/nvidia/cuda_runtime/include "$S"/nvidia/cuda_runtime/lib/*.a "$S"/nvidia/__init__.py
python3 benches/gpu/strip_fatbin.py "$S/faiss/libfaiss.so" 90
gcc -O2 -fPIC -shared -Wl,-soname,libcublas.so.12 -Wl,--version-script=<(echo 'libcublas.so.12 { global: cublas*; local: *; };') \
  -o "$S/nvidia/cublas/lib/libcublas.so.12" benches/gpu/cublas12_shim.c -ldl
echo 'static int unused;' > "$W/empty.c"
for so in libcublasLt.so.12:cublas libcurand.so.10:curand; do
  gcc -O2 -fPIC -shared -Wl,-soname,${so%%:*} -o "$S/nvidia/${so##*:}/lib/${so%%:*}" "$W/empty.c"
done
strip -o "$S/native/_native.abi3.so" python/interleaf/_native.abi3.so
mkdir -p .dev && cp benches/gpu/run.sh .dev/run.sh
tar -cf - -C "$S" . | xz -T0 -6 > .dev/site.tar.xz
ls -la .dev; echo "tracked tree + .dev must stay under 64 MiB"
