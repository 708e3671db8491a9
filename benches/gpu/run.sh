#!/bin/bash
# Device run (see bundle.sh): faiss-gpu 1.15.1 (CUDA 12 wheel, sm_90 SASS kept) on the CUDA 13 image through a
# libcublas.so.12 -> libcublas.so.13 forwarder; GPU tests of interleaf.search/semantic; the GPU bench.
cd "$(dirname "$0")/.."  # the repo root: this runs as .dev/run.sh
T0=$(date +%s); el() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; }
mkdir -p /tmp/site && tar -xJf .dev/site.tar.xz -C /tmp/site && el unpacked
# Regular packages, so the image's own nvidia namespace cannot shadow these lib dirs.
touch /tmp/site/nvidia/__init__.py /tmp/site/nvidia/cuda_runtime/__init__.py /tmp/site/nvidia/cublas/__init__.py /tmp/site/nvidia/curand/__init__.py
CU13=$(python3 -c "import nvidia.cu13 as m; print(list(m.__path__)[0]+'/lib')" 2>/dev/null)
[ -e "$CU13/libcublas.so.13" ] || CU13=$(dirname "$(find / -name 'libcublas.so.13*' 2>/dev/null | head -1)")
el "cublas13 in $CU13"; ls $CU13 | head -30
cp /tmp/site/native/_native.abi3.so python/interleaf/
export LD_LIBRARY_PATH=$CU13:$LD_LIBRARY_PATH PYTHONPATH=/tmp/site:$PWD/python PYTHONUNBUFFERED=1 OMP_NUM_THREADS=16
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 - <<'PY' 2>&1 | tee $OUT/smoke.txt
import numpy as np, faiss, time
print("faiss", faiss.__version__, "gpus", faiss.get_num_gpus())
res = faiss.StandardGpuResources()
x = np.random.default_rng(0).random((20000, 64), dtype=np.float32)
cpu = faiss.IndexFlatL2(64); cpu.add(x)
gpu = faiss.index_cpu_to_gpu(res, 0, cpu)
D, I = gpu.search(x[:200], 5); D2, I2 = cpu.search(x[:200], 5)
print("flat gpu==cpu", (I == I2).mean())
q = faiss.IndexFlatL2(64); ivf = faiss.IndexIVFFlat(q, 64, 100); g = faiss.index_cpu_to_gpu(res, 0, ivf); g.train(x); g.add(x); g.nprobe = 10
print("ivf top1 self", (g.search(x[:200], 1)[1][:, 0] == np.arange(200)).mean())
km = faiss.Kmeans(64, 50, niter=5, gpu=True, seed=0); km.train(x); print("kmeans obj", km.obj[-1])
PY
grep -q "kmeans obj" $OUT/smoke.txt || { el "SMOKE FAILED"; LD_DEBUG=libs python3 -c "import faiss" 2>&1 | grep -iE "cublas|cudart|error" | tail -20; exit 1; }
el "smoke ok"
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_search.py tests/test_semantic.py 2>&1 | tee $OUT/pytest.txt | tail -40
el "tests done"
cd benches && timeout ${BENCH_TIMEOUT:-330} python3 faiss_gpu.py --out $OUT/faiss_gpu.json 2>&1 | tee $OUT/bench.txt
el "bench done"
