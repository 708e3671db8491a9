/* libcublas.so.12 -> libcublas.so.13 forwarder for the eight cuBLAS calls faiss-gpu (CUDA 12 wheel)
   makes, so that wheel can run on a CUDA-13-only image. Bench-only; never shipped. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
typedef int st;
static void *lib;
static void *sym(const char *n) {
  if (!lib) { lib = dlopen("libcublas.so.13", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) { fprintf(stderr, "cublas shim: %s\n", dlerror()); abort(); } }
  void *p = dlsym(lib, n); if (!p) { fprintf(stderr, "cublas shim: no %s\n", n); abort(); } return p;
}
#define FWD(name, sig, args) st name sig { static st (*f) sig; if (!f) f = sym(#name); return f args; }
static int algo(int a) { return (a >= 99 && a <= 115) ? -1 : a; }
static int math(int m) { return (m & ~16) == 1 ? (m & 16) : m; }
FWD(cublasCreate_v2, (void **h), (h))
FWD(cublasDestroy_v2, (void *h), (h))
FWD(cublasSetStream_v2, (void *h, void *s), (h, s))
FWD(cublasGetMathMode, (void *h, int *m), (h, m))
st cublasSetMathMode(void *h, int m) { static st (*f)(void *, int); if (!f) f = sym("cublasSetMathMode"); return f(h, math(m)); }
FWD(cublasSgemmEx, (void *h, int ta, int tb, int m, int n, int k, const float *al, const void *A, int At, int lda,
    const void *B, int Bt, int ldb, const float *be, void *C, int Ct, int ldc),
    (h, ta, tb, m, n, k, al, A, At, lda, B, Bt, ldb, be, C, Ct, ldc))
st cublasGemmEx(void *h, int ta, int tb, int m, int n, int k, const void *al, const void *A, int At, int lda,
    const void *B, int Bt, int ldb, const void *be, void *C, int Ct, int ldc, int ct, int ag) {
  static st (*f)(void *, int, int, int, int, int, const void *, const void *, int, int, const void *, int, int,
                 const void *, void *, int, int, int, int);
  if (!f) f = sym("cublasGemmEx");
  return f(h, ta, tb, m, n, k, al, A, At, lda, B, Bt, ldb, be, C, Ct, ldc, ct, algo(ag));
}
st cublasGemmStridedBatchedEx(void *h, int ta, int tb, int m, int n, int k, const void *al, const void *A, int At,
    int lda, long long sA, const void *B, int Bt, int ldb, long long sB, const void *be, void *C, int Ct, int ldc,
    long long sC, int bc, int ct, int ag) {
  static st (*f)(void *, int, int, int, int, int, const void *, const void *, int, int, long long, const void *, int,
                 int, long long, const void *, void *, int, int, long long, int, int, int);
  if (!f) f = sym("cublasGemmStridedBatchedEx");
  return f(h, ta, tb, m, n, k, al, A, At, lda, sA, B, Bt, ldb, sB, be, C, Ct, ldc, sC, bc, ct, algo(ag));
}
