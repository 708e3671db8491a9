//! CPU features, detected once per process and used by every SIMD path.
//!
//! `INTERLEAF_NO_AVX512=1` and `INTERLEAF_NO_AVX2=1` turn a feature off (read once, at the
//! first query), to measure or test the narrower paths on a wider CPU.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub avx2: bool,
    pub avx512f: bool,
}

/// The features of this CPU that interleaf may use.
pub fn features() -> Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    *FEATURES.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Features {
    let off = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
    let avx2 = !off("INTERLEAF_NO_AVX2") && std::arch::is_x86_feature_detected!("avx2");
    let avx512f = avx2 && !off("INTERLEAF_NO_AVX512") && std::arch::is_x86_feature_detected!("avx512f");
    Features { avx2, avx512f }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Features {
    Features::default()
}

/// AVX2 may be used.
#[inline]
pub fn avx2() -> bool {
    features().avx2
}

/// AVX-512F may be used.
#[inline]
pub fn avx512f() -> bool {
    features().avx512f
}
