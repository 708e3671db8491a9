//! MinHash signatures, batch and parallel.
//!
//! Two modes:
//! - [`Scheme::Affine32`] / [`Scheme::Legacy`]: bit-identical to `datasketch.MinHash` 2.0
//!   updated with each shingle's UTF-8 bytes. Token hash = first 4 bytes of SHA-1, little
//!   endian. affine32: `fmix32(h)` then `a*h + b mod 2^32`; legacy:
//!   `((a*h + b) mod (2^61 - 1)) & 0xffffffff` with a wrapping 64-bit multiply. The (a, b)
//!   parameters are given by the caller (taken from datasketch's generator).
//! - [`Scheme::Fast`]: ours. Token hash = a polynomial of the n-gram's unit hashes, finalised
//!   (no strings are built; see [`for_each_shingle_hash`]), then `a*h + b mod 2^32` on its high
//!   32 bits, vectorised (AVX-512 or AVX2 when the CPU has them). Not comparable with datasketch
//!   signatures; the Jaccard estimate has the same accuracy.

use rayon::prelude::*;
use sha1::{Digest, Sha1};

use crate::text::shingle::{for_each_shingle_hash, Unit};

const MERSENNE61: u64 = (1 << 61) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Affine32,
    Legacy,
    Fast,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Scheme> {
        match s {
            "affine32" => Some(Scheme::Affine32),
            "legacy" => Some(Scheme::Legacy),
            "fast" => Some(Scheme::Fast),
            _ => None,
        }
    }
}

/// What a signature is computed from.
#[derive(Clone, Debug)]
pub struct MinHashParams {
    pub n: usize,
    pub unit: Unit,
    pub scheme: Scheme,
    /// Per-permutation multipliers and offsets (odd `a` for the affine schemes).
    pub a: Vec<u64>,
    pub b: Vec<u64>,
    /// Seed of the fast mode's token hash.
    pub seed: u64,
}

impl MinHashParams {
    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// Parameters for the fast mode from a seed (SplitMix64 stream; `a` odd).
    pub fn fast(num_perm: usize, n: usize, unit: Unit, seed: u64) -> Self {
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let a = (0..num_perm).map(|_| (next() as u32 | 1) as u64).collect();
        let b = (0..num_perm).map(|_| next() as u32 as u64).collect();
        MinHashParams { n, unit, scheme: Scheme::Fast, a, b, seed }
    }
}

#[inline]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

const SHA1_INIT: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];

/// datasketch's `sha1_hash32`: the first 4 bytes of SHA-1, little endian. Inputs of up to 119
/// bytes (every word shingle of ordinary text) are padded here and go straight to the
/// compression function, one or two blocks, without the streaming hasher's buffering.
#[inline]
pub fn sha1_hash32(data: &[u8]) -> u32 {
    let len = data.len();
    if len > 119 {
        let d = Sha1::digest(data);
        return u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    }
    let mut buf = [0u8; 128];
    buf[..len].copy_from_slice(data);
    buf[len] = 0x80;
    let blocks = if len <= 55 { 64 } else { 128 };
    buf[blocks - 8..blocks].copy_from_slice(&((len as u64) * 8).to_be_bytes());
    let mut state = SHA1_INIT;
    for block in buf[..blocks].chunks_exact(64) {
        sha1::compress(&mut state, std::slice::from_ref(sha1::digest::generic_array::GenericArray::from_slice(block)));
    }
    state[0].swap_bytes()
}

/// datasketch's token hash of every shingle that [`crate::text::shingle::shingles`] gives (repeats included, which
/// cannot change a minimum): SHA-1 of the words joined by one space, the shingle's bytes
/// written into `buf` (scratch, as is `spans`).
fn for_each_shingle_sha1(text: &str, n: usize, unit: Unit, spans: &mut Vec<(usize, usize)>, buf: &mut Vec<u8>, mut f: impl FnMut(u32)) {
    let n = n.max(1);
    match unit {
        Unit::Word => {
            spans.clear();
            crate::text::for_each_word_span(text, |s, e| spans.push((s, e)));
            if spans.is_empty() {
                return;
            }
            let bytes = text.as_bytes();
            let mut hash = |ws: &[(usize, usize)]| {
                // Words one space apart in the text: the shingle is a slice of it.
                if ws.windows(2).all(|p| p[1].0 == p[0].1 + 1 && bytes[p[0].1] == b' ') {
                    return sha1_hash32(&bytes[ws[0].0..ws[ws.len() - 1].1]);
                }
                buf.clear();
                for (i, &(s, e)) in ws.iter().enumerate() {
                    if i > 0 {
                        buf.push(b' ');
                    }
                    buf.extend_from_slice(&bytes[s..e]);
                }
                sha1_hash32(buf)
            };
            if spans.len() < n {
                f(hash(spans));
            } else {
                spans.windows(n).for_each(|w| f(hash(w)));
            }
        }
        // Every n-code-point window, a slice of the text: a repeated shingle hashes again but
        // leaves the minima as they were, and memory stays one span per code point (every
        // window built as a string first took about (len - n) x n bytes).
        Unit::Char => {
            spans.clear();
            spans.extend(text.char_indices().map(|(i, c)| (i, i + c.len_utf8())));
            let bytes = text.as_bytes();
            if spans.is_empty() {
                return;
            }
            if spans.len() < n {
                f(sha1_hash32(bytes));
            } else {
                spans.windows(n).for_each(|w| f(sha1_hash32(&bytes[w[0].0..w[n - 1].1])));
            }
        }
    }
}

/// `sig[k] = min(sig[k], min over h in hs of a[k] * h + b[k])`, `L` lanes at a time with the
/// running minima kept in registers across all token hashes (vpmulld + vpaddd + vpminud when
/// compiled for AVX2 or AVX-512).
#[inline(always)]
fn apply_affine32_generic<const L: usize>(sig: &mut [u32], a: &[u32], b: &[u32], hs: &[u32]) {
    let full = sig.len() / L * L;
    for ((s, a), b) in sig[..full].chunks_exact_mut(L).zip(a.chunks_exact(L)).zip(b.chunks_exact(L)) {
        let mut m = [u32::MAX; L];
        for &h in hs {
            for l in 0..L {
                m[l] = m[l].min(a[l].wrapping_mul(h).wrapping_add(b[l]));
            }
        }
        for l in 0..L {
            s[l] = s[l].min(m[l]);
        }
    }
    for k in full..sig.len() {
        for &h in hs {
            sig[k] = sig[k].min(a[k].wrapping_mul(h).wrapping_add(b[k]));
        }
    }
}

/// AVX2: 32 permutations at a time, their `a`, `b` and running minima in 12 of the 16 ymm
/// registers, one broadcast of each token hash. Written with intrinsics: LLVM vectorises
/// [`apply_affine32_generic`] along the token hashes instead when it targets AVX2 (the minima of
/// 16 permutations x 32 hashes spilled to the stack, and a scalar tail for the last hashes), about
/// 4x slower on a 73-shingle text.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn apply_affine32_avx2(sig: &mut [u32], a: &[u32], b: &[u32], hs: &[u32]) {
    use std::arch::x86_64::*;
    let n = sig.len().min(a.len()).min(b.len());
    // SAFETY (all loads and stores below): unaligned, at `k + 8 * j + 7 < n` or `k + 7 < n`.
    let load = |x: &[u32], k: usize| _mm256_loadu_si256(x.as_ptr().add(k).cast());
    let mut k = 0;
    while k + 32 <= n {
        let (a0, a1, a2, a3) = (load(a, k), load(a, k + 8), load(a, k + 16), load(a, k + 24));
        let (b0, b1, b2, b3) = (load(b, k), load(b, k + 8), load(b, k + 16), load(b, k + 24));
        let (mut m0, mut m1, mut m2, mut m3) = (load(sig, k), load(sig, k + 8), load(sig, k + 16), load(sig, k + 24));
        for &h in hs {
            let h = _mm256_set1_epi32(h as i32);
            m0 = _mm256_min_epu32(m0, _mm256_add_epi32(_mm256_mullo_epi32(a0, h), b0));
            m1 = _mm256_min_epu32(m1, _mm256_add_epi32(_mm256_mullo_epi32(a1, h), b1));
            m2 = _mm256_min_epu32(m2, _mm256_add_epi32(_mm256_mullo_epi32(a2, h), b2));
            m3 = _mm256_min_epu32(m3, _mm256_add_epi32(_mm256_mullo_epi32(a3, h), b3));
        }
        let out = sig.as_mut_ptr().add(k);
        _mm256_storeu_si256(out.cast(), m0);
        _mm256_storeu_si256(out.add(8).cast(), m1);
        _mm256_storeu_si256(out.add(16).cast(), m2);
        _mm256_storeu_si256(out.add(24).cast(), m3);
        k += 32;
    }
    while k + 8 <= n {
        let (a0, b0, mut m0) = (load(a, k), load(b, k), load(sig, k));
        for &h in hs {
            m0 = _mm256_min_epu32(m0, _mm256_add_epi32(_mm256_mullo_epi32(a0, _mm256_set1_epi32(h as i32)), b0));
        }
        _mm256_storeu_si256(sig.as_mut_ptr().add(k).cast(), m0);
        k += 8;
    }
    for k in k..n {
        for &h in hs {
            sig[k] = sig[k].min(a[k].wrapping_mul(h).wrapping_add(b[k]));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn apply_affine32_avx512(sig: &mut [u32], a: &[u32], b: &[u32], hs: &[u32]) {
    apply_affine32_generic::<32>(sig, a, b, hs)
}

#[derive(Clone, Copy)]
enum Isa {
    Generic,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::cpu::avx512f() {
                return Isa::Avx512;
            }
            if crate::cpu::avx2() {
                return Isa::Avx2;
            }
        }
        Isa::Generic
    }
}

struct Affine32Lanes {
    a: Vec<u32>,
    b: Vec<u32>,
    isa: Isa,
}

impl Affine32Lanes {
    fn new(p: &MinHashParams) -> Self {
        Affine32Lanes { a: p.a.iter().map(|&x| x as u32).collect(), b: p.b.iter().map(|&x| x as u32).collect(), isa: Isa::detect() }
    }

    #[inline]
    fn apply(&self, sig: &mut [u32], hs: &[u32]) {
        match self.isa {
            // SAFETY: the CPU's support was checked in `Isa::detect`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { apply_affine32_avx512(sig, &self.a, &self.b, hs) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { apply_affine32_avx2(sig, &self.a, &self.b, hs) },
            Isa::Generic => apply_affine32_generic::<16>(sig, &self.a, &self.b, hs),
        }
    }
}

/// Per-thread scratch buffers, reused from text to text.
#[derive(Default)]
struct Scratch {
    hs: Vec<u32>,
    units: Vec<u64>,
    spans: Vec<(usize, usize)>,
    buf: Vec<u8>,
}

/// Fills `out` (length num_perm) with the signature of one text.
fn signature_into(text: &str, p: &MinHashParams, lanes: &Affine32Lanes, out: &mut [u32], sc: &mut Scratch) {
    out.fill(u32::MAX);
    let Scratch { hs, units, spans, buf } = sc;
    hs.clear();
    match p.scheme {
        Scheme::Fast => {
            for_each_shingle_hash(text, p.n, p.unit, p.seed, units, |h| hs.push((h >> 32) as u32));
            lanes.apply(out, hs);
        }
        Scheme::Affine32 => {
            for_each_shingle_sha1(text, p.n, p.unit, spans, buf, |h| hs.push(fmix32(h)));
            lanes.apply(out, hs);
        }
        Scheme::Legacy => for_each_shingle_sha1(text, p.n, p.unit, spans, buf, |h| {
            let h = h as u64;
            for ((o, &a), &b) in out.iter_mut().zip(&p.a).zip(&p.b) {
                let v = ((a.wrapping_mul(h).wrapping_add(b)) % MERSENNE61) & 0xffff_ffff;
                *o = (*o).min(v as u32);
            }
        }),
    }
}

/// Signatures of many texts, row-major `(texts.len(), num_perm)`, computed in parallel on the
/// current rayon pool. An empty text (no shingle) gets all `u32::MAX`, as an empty datasketch
/// MinHash does.
pub fn signatures(texts: &[&str], p: &MinHashParams) -> Vec<u32> {
    let k = p.num_perm();
    let mut out = vec![0u32; texts.len() * k];
    if k == 0 {
        return out;
    }
    let lanes = Affine32Lanes::new(p);
    out.par_chunks_mut(k).zip(texts.par_iter()).with_min_len(16).for_each_init(Scratch::default, |sc, (row, t)| signature_into(t, p, &lanes, row, sc));
    out
}

/// Fraction of equal positions: the MinHash estimate of Jaccard similarity.
pub fn estimated_jaccard(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_gives_max_values() {
        let p = MinHashParams::fast(8, 5, Unit::Word, 1);
        assert_eq!(signatures(&[""], &p), vec![u32::MAX; 8]);
    }

    #[test]
    fn similar_texts_have_close_estimates() {
        let p = MinHashParams::fast(256, 2, Unit::Word, 7);
        let a = "the quick brown fox jumps over the lazy dog near the river bank today";
        let b = "the quick brown fox jumps over the lazy dog near the river bank tonight";
        let s = signatures(&[a, b], &p);
        let est = estimated_jaccard(&s[..256], &s[256..]);
        // 12 shared bigrams out of 14 distinct: J = 12/14 = 0.857.
        assert!((est - 12.0 / 14.0).abs() < 0.1, "{est}");
    }

    #[test]
    fn sha1_hash32_matches_datasketch_on_a_known_value() {
        // struct.unpack("<I", hashlib.sha1(b"abc").digest()[:4])[0]
        assert_eq!(sha1_hash32(b"abc"), 0x363e99a9);
    }

    #[test]
    fn sha1_hash32_agrees_with_the_streaming_hasher_at_every_length() {
        // Around the one/two-block padding edges (55, 56, 64, 119, 120) and beyond.
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..data.len() {
            let d = Sha1::digest(&data[..len]);
            assert_eq!(sha1_hash32(&data[..len]), u32::from_le_bytes([d[0], d[1], d[2], d[3]]), "len {len}");
        }
    }

    #[test]
    fn every_instruction_set_gives_the_same_minima() {
        // Permutation counts with and without a 32-, 8- and 1-lane tail; no, one and many hashes.
        for num_perm in [1, 7, 8, 31, 32, 100, 128, 256] {
            for n_hashes in [0u32, 1, 3, 77, 300] {
                let p = MinHashParams::fast(num_perm, 5, Unit::Word, 3);
                let lanes = Affine32Lanes::new(&p);
                let hs: Vec<u32> = (0..n_hashes).map(|i| i.wrapping_mul(0x9E37_79B9) ^ 0x5555).collect();
                // A signature already holding minima from earlier hashes, as a second call sees.
                let start: Vec<u32> = (0..num_perm as u32).map(|k| if k % 3 == 0 { u32::MAX } else { k.wrapping_mul(0x0100_0193) }).collect();
                let mut want = start.clone();
                for (k, w) in want.iter_mut().enumerate() {
                    for &h in &hs {
                        *w = (*w).min(lanes.a[k].wrapping_mul(h).wrapping_add(lanes.b[k]));
                    }
                }
                let case = format!("{num_perm} permutations, {n_hashes} hashes");
                let mut got = start.clone();
                apply_affine32_generic::<16>(&mut got, &lanes.a, &lanes.b, &hs);
                assert_eq!(got, want, "generic, {case}");
                let mut got = start.clone();
                lanes.apply(&mut got, &hs);
                assert_eq!(got, want, "detected, {case}");
                #[cfg(target_arch = "x86_64")]
                if crate::cpu::avx2() {
                    let mut got = start.clone();
                    unsafe { apply_affine32_avx2(&mut got, &lanes.a, &lanes.b, &hs) };
                    assert_eq!(got, want, "avx2, {case}");
                }
                #[cfg(target_arch = "x86_64")]
                if crate::cpu::avx512f() {
                    let mut got = start.clone();
                    unsafe { apply_affine32_avx512(&mut got, &lanes.a, &lanes.b, &hs) };
                    assert_eq!(got, want, "avx512, {case}");
                }
            }
        }
    }
}
