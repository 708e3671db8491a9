//! Caption metrics as pycocoevalcap 1.2 computes them on already tokenised text: BLEU-1..4
//! (`Bleu(4)`, reference length "closest"), ROUGE-L (`Rouge`, beta 1.2) and CIDEr
//! (`Cider`: CIDEr-D with clipping and the Gaussian length penalty, sigma 6, document
//! frequencies over the evaluated references). The floating-point operations follow the
//! reference's order, so values agree to the last bits (sums over the corpus use numpy's
//! pairwise summation).

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::py_split;

const N: usize = 4;

/// An n-gram (1..=4 words) as word ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Gram {
    len: u8,
    ids: [u32; N],
}

/// Word ids shared by every sentence of one computation.
#[derive(Default)]
struct Vocab<'a> {
    ids: FxHashMap<&'a str, u32>,
}

impl<'a> Vocab<'a> {
    fn words(&mut self, s: &'a str) -> Vec<u32> {
        py_split(s)
            .map(|w| {
                let next = self.ids.len() as u32;
                *self.ids.entry(w).or_insert(next)
            })
            .collect()
    }
}

/// The 1..=4-gram counts of `words` in the order Python's `precook` first inserts them (all
/// unigrams by first occurrence, then bigrams, ...): the order dict iteration follows.
fn precook(words: &[u32]) -> Vec<(Gram, u32)> {
    let mut index: FxHashMap<Gram, usize> = FxHashMap::default();
    let mut out: Vec<(Gram, u32)> = Vec::new();
    for k in 1..=N {
        if words.len() < k {
            break;
        }
        for i in 0..=words.len() - k {
            let mut ids = [0u32; N];
            ids[..k].copy_from_slice(&words[i..i + k]);
            let g = Gram { len: k as u8, ids };
            match index.get(&g) {
                Some(&j) => out[j].1 += 1,
                None => {
                    index.insert(g, out.len());
                    out.push((g, 1));
                }
            }
        }
    }
    out
}

/// numpy's `np.add.reduce` of a contiguous float64 array (pairwise summation with eight
/// accumulators per 128-element block), so means equal `np.mean` bit for bit.
pub fn numpy_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&a[..n2]) + numpy_sum(&a[n2..])
    }
}

/// `np.mean` of `a` (NaN when empty, as numpy).
pub fn numpy_mean(a: &[f64]) -> f64 {
    numpy_sum(a) / a.len() as f64
}

/// BLEU-1..4 for the corpus and for each hypothesis, as `Bleu(4).compute_score`.
pub struct Bleu {
    pub corpus: [f64; N],
    pub per: Vec<[f64; N]>,
}

pub fn bleu<'a>(hyps: &[&'a str], refs: &[Vec<&'a str>]) -> Bleu {
    assert_eq!(hyps.len(), refs.len());
    // Each hypothesis on its own (in parallel; word ids only need to agree within one
    // hypothesis and its references), then the corpus totals in order.
    let stats: Vec<([usize; N], [usize; N], usize, usize)> = hyps
        .par_iter()
        .zip(refs)
        .map(|(h, rs)| {
            let mut vocab = Vocab::default();
            let mut maxcounts: FxHashMap<Gram, u32> = FxHashMap::default();
            let mut reflens = Vec::with_capacity(rs.len());
            for r in rs {
                let w = vocab.words(r);
                reflens.push(w.len());
                for (g, c) in precook(&w) {
                    let m = maxcounts.entry(g).or_insert(0);
                    *m = (*m).max(c);
                }
            }
            let w = vocab.words(h);
            let testlen = w.len();
            // "closest": the reference length nearest the hypothesis's, the shorter on a tie.
            let reflen = reflens.iter().map(|&l| (l.abs_diff(testlen), l)).min().map_or(0, |t| t.1);
            let mut correct = [0usize; N];
            for (g, c) in precook(&w) {
                correct[g.len as usize - 1] += c.min(maxcounts.get(&g).copied().unwrap_or(0)) as usize;
            }
            let guess: [usize; N] = std::array::from_fn(|k| testlen.saturating_sub(k));
            (correct, guess, testlen, reflen)
        })
        .collect();
    let (mut total_test, mut total_ref) = (0usize, 0usize);
    let mut total_guess = [0usize; N];
    let mut total_correct = [0usize; N];
    let mut per = Vec::with_capacity(hyps.len());
    for (correct, guess, testlen, reflen) in &stats {
        per.push(bleu_scores(correct, guess, *testlen, *reflen));
        total_test += testlen;
        total_ref += reflen;
        for k in 0..N {
            total_guess[k] += guess[k];
            total_correct[k] += correct[k];
        }
    }
    Bleu { corpus: bleu_scores(&total_correct, &total_guess, total_test, total_ref), per }
}

/// BLEU-1..4 from clipped n-gram matches, n-gram counts and the lengths, with pycocoevalcap's
/// guards against zero (`tiny` 1e-15, `small` 1e-9) and its brevity penalty; the same formula
/// for one sentence and for the corpus totals.
fn bleu_scores(correct: &[usize; N], guess: &[usize; N], testlen: usize, reflen: usize) -> [f64; N] {
    const SMALL: f64 = 1e-9;
    const TINY: f64 = 1e-15;
    let mut scores = [0.0f64; N];
    let mut b = 1.0f64;
    for k in 0..N {
        b *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
        scores[k] = b.powf(1.0 / (k + 1) as f64);
    }
    let ratio = (testlen as f64 + TINY) / (reflen as f64 + SMALL);
    if ratio < 1.0 {
        for s in scores.iter_mut() {
            *s *= (1.0 - 1.0 / ratio).exp();
        }
    }
    scores
}

/// Length of the longest common subsequence of two token lists.
fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L of each hypothesis against its references, as `Rouge().calc_score`: tokens split on
/// single spaces, precision and recall each maximised over the references, beta 1.2.
pub fn rouge_l(hyps: &[&str], refs: &[Vec<&str>]) -> Vec<f64> {
    assert_eq!(hyps.len(), refs.len());
    let beta2 = 1.2f64 * 1.2;
    hyps.par_iter()
        .zip(refs)
        .map(|(h, rs)| {
            let c: Vec<&str> = h.split(' ').collect();
            let (mut p, mut r) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
            for rf in rs {
                let t: Vec<&str> = rf.split(' ').collect();
                let l = lcs(&t, &c) as f64;
                p = p.max(l / c.len() as f64);
                r = r.max(l / t.len() as f64);
            }
            if p != 0.0 && r != 0.0 && !rs.is_empty() {
                ((1.0 + beta2) * p * r) / (r + beta2 * p)
            } else {
                0.0
            }
        })
        .collect()
}

/// CIDEr-D of each hypothesis, as pycocoevalcap's `Cider().compute_score` (document
/// frequencies over these references; the corpus score is `numpy_mean` of these).
pub fn cider<'a>(hyps: &[&'a str], refs: &[Vec<&'a str>]) -> Vec<f64> {
    assert_eq!(hyps.len(), refs.len());
    const SIGMA: f64 = 6.0;
    let mut vocab = Vocab::default();
    let cooked_refs: Vec<Vec<Vec<(Gram, u32)>>> = refs.iter().map(|rs| rs.iter().map(|r| precook(&vocab.words(r))).collect()).collect();
    let cooked_hyps: Vec<Vec<(Gram, u32)>> = hyps.iter().map(|h| precook(&vocab.words(h))).collect();
    let mut df: FxHashMap<Gram, f64> = FxHashMap::default();
    for rs in &cooked_refs {
        let mut seen: FxHashMap<Gram, ()> = FxHashMap::default();
        for r in rs {
            for (g, _) in r {
                if seen.insert(*g, ()).is_none() {
                    *df.entry(*g).or_insert(0.0) += 1.0;
                }
            }
        }
    }
    let ref_len = (refs.len() as f64).ln();
    // tf-idf vectors per n (in insertion order), their norms and the bigram count.
    struct Vec4 {
        vec: [Vec<(Gram, f64)>; N],
        norm: [f64; N],
        length: i64,
    }
    let counts2vec = |cnts: &[(Gram, u32)]| -> Vec4 {
        let mut v = Vec4 { vec: Default::default(), norm: [0.0; N], length: 0 };
        for (g, tf) in cnts {
            let d = df.get(g).copied().unwrap_or(0.0).max(1.0).ln();
            let n = g.len as usize - 1;
            let w = *tf as f64 * (ref_len - d);
            v.vec[n].push((*g, w));
            v.norm[n] += w * w;
            if n == 1 {
                v.length += *tf as i64;
            }
        }
        for x in v.norm.iter_mut() {
            *x = x.sqrt();
        }
        v
    };
    cooked_hyps
        .par_iter()
        .zip(&cooked_refs)
        .map(|(h, rs)| {
            let vh = counts2vec(h);
            let mut score = [0.0f64; N];
            for r in rs {
                let vr = counts2vec(r);
                let lookup: [FxHashMap<Gram, f64>; N] = std::array::from_fn(|n| vr.vec[n].iter().copied().collect());
                let delta = (vh.length - vr.length) as f64;
                for n in 0..N {
                    let mut val = 0.0f64;
                    for (g, w) in &vh.vec[n] {
                        let wr = lookup[n].get(g).copied().unwrap_or(0.0);
                        val += w.min(wr) * wr;
                    }
                    if vh.norm[n] != 0.0 && vr.norm[n] != 0.0 {
                        val /= vh.norm[n] * vr.norm[n];
                    }
                    val *= std::f64::consts::E.powf(-(delta * delta) / (2.0 * SIGMA * SIGMA));
                    score[n] += val;
                }
            }
            let mut avg = numpy_mean(&score);
            avg /= rs.len() as f64;
            avg * 10.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bleu_of_an_exact_match_is_one() {
        let b = bleu(&["the cat sat on the mat"], &[vec!["the cat sat on the mat", "a cat"]]);
        for v in b.corpus {
            assert!((v - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn numpy_sum_matches_plain_sums_of_integers() {
        let a: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        assert_eq!(numpy_sum(&a), 499_500.0);
        assert_eq!(numpy_sum(&a[..5]), 10.0);
    }

    #[test]
    fn rouge_and_lcs() {
        assert_eq!(lcs(&["a", "b", "c", "d"], &["a", "c", "d"]), 3);
        let r = rouge_l(&["a b c"], &[vec!["a b c"]]);
        assert!((r[0] - 1.0).abs() < 1e-12);
    }
}
