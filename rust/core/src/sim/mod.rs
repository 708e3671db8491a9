//! Similarity math over documents: embeddings come as one row-major `(n, dim)` f32 matrix per
//! kind with CSR-style document offsets (`offsets[d]..offsets[d + 1]` are document `d`'s rows,
//! `offsets.len() == n_docs + 1`), and every function works document by document in parallel.
//!
//! - [`assign`]: exact rectangular linear assignment (the optimum of scipy's
//!   `linear_sum_assignment`);
//! - [`mmc4_assign`]: MMC4's image-to-sentence assignment;
//! - [`sequence_consistency`]: CoMM's image-sequence score F;
//! - [`coherence`]: consecutive-cosine text coherence with a shuffled baseline;
//! - [`top_k`]: the most similar rows of one matrix for each row of another.
//!
//! Cosines are of the rows as given, each divided by the product of the two norms (a zero or
//! NaN row gives NaN). F and coherence sum in f64; the image x sentence blocks of MMC4's
//! assignment are float32 products of unit rows, as MMC4's numpy computes them (within about
//! 1e-7 of the f64 value).

pub mod assign;

use rayon::prelude::*;

pub use assign::linear_assignment;

/// Checks a CSR offset array against `n` rows: starts at 0, never decreases, ends at `n`.
pub fn check_offsets(offsets: &[i64], n: usize, what: &str) -> Result<(), String> {
    if offsets.first() != Some(&0) || offsets.last().map(|&v| v as usize) != Some(n) || offsets.windows(2).any(|w| w[1] < w[0]) {
        return Err(format!("{what} offsets must start at 0, never decrease and end at the number of rows ({n})"));
    }
    Ok(())
}

fn rows(offsets: &[i64], d: usize) -> std::ops::Range<usize> {
    offsets[d] as usize..offsets[d + 1] as usize
}

/// Each row divided by its L2 norm (in f64); a zero row becomes NaN, so its cosines are NaN.
fn unit_rows(emb: &[f32], dim: usize, range: std::ops::Range<usize>) -> Vec<f64> {
    let mut out = Vec::with_capacity(range.len() * dim);
    for r in range {
        let at = out.len();
        out.extend(emb[r * dim..(r + 1) * dim].iter().map(|&v| f64::from(v)));
        let row = &mut out[at..];
        let norm = dot(row, row).sqrt();
        let scale = if norm > 0.0 { 1.0 / norm } else { f64::NAN };
        row.iter_mut().for_each(|v| *v *= scale);
    }
    out
}

/// Dot product with eight independent partial sums (the compiler turns them into SIMD lanes; a
/// single running sum would wait on every addition). In f32, as a float32 matrix product sums:
/// about 1e-7 from the f64 value for unit vectors.
fn dot_lanes<T: Copy + Default + std::ops::Add<Output = T> + std::ops::Mul<Output = T> + std::iter::Sum>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::default(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: T = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] = acc[k] + x[k] * y[k];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    dot_lanes(a, b)
}

fn dot32(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

/// Each row divided by its L2 norm, in f32 (as numpy normalises float32 embeddings; rows whose
/// squared norm leaves f32's range go through f64); a zero, infinite or NaN row becomes NaN.
fn unit_rows_f32(emb: &[f32], dim: usize, range: std::ops::Range<usize>) -> Vec<f32> {
    let mut out = Vec::with_capacity(range.len() * dim);
    for r in range {
        let row = &emb[r * dim..(r + 1) * dim];
        let norm = dot32(row, row).sqrt();
        if norm.is_finite() && norm > 1e-18 {
            let scale = 1.0 / norm;
            out.extend(row.iter().map(|&v| v * scale));
        } else {
            // Out of f32's comfortable range (or zero / NaN): the f64 path.
            let norm = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
            out.extend(row.iter().map(|&v| if norm > 0.0 && norm.is_finite() { (f64::from(v) / norm) as f32 } else { f32::NAN }));
        }
    }
    out
}

/// The cosine block of one document (row-major, `a` rows x `b` rows): its rows of `a` against
/// its rows of `b`, from unit rows in float32 (as MMC4's numpy product of float32 CLIP embeddings).
fn block(a: &[f32], ra: std::ops::Range<usize>, b: &[f32], rb: std::ops::Range<usize>, dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(ra.len() * rb.len());
    if dim == 0 {
        return out;
    }
    let (ua, ub) = (unit_rows_f32(a, dim, ra), unit_rows_f32(b, dim, rb));
    for x in ua.chunks_exact(dim) {
        out.extend(ub.chunks_exact(dim).map(|y| dot32(x, y)));
    }
    out
}

/// MMC4's assignment of one document's images to its sentences, from its `images x sentences`
/// similarity matrix: an image whose best similarity is below `threshold` is dropped (-1)
/// before anything is assigned (exactly `threshold` is kept); the survivors are matched to
/// distinct sentences maximising the total similarity; when there are more survivors than
/// sentences, each one left over goes to its most similar sentence (the first on ties), so a
/// sentence may then carry several images. A NaN cell (an unknown similarity) is never matched:
/// an image that could only be matched through one is left over too. Returns the sentence index
/// of each image, or -1. The threshold is compared in the matrix's own precision (MMC4's
/// float32 numpy compares float32 cosines with float32's 0.15), and the assignment optimises
/// the values as given (float64 ones are not rounded first).
pub fn mmc4_assign<T: Copy + PartialOrd + Into<f64>>(sim: &[T], images: usize, sentences: usize, threshold: T) -> Result<Vec<i64>, String> {
    if sim.len() != images * sentences {
        return Err(format!("similarity holds {} values, not {images} x {sentences}", sim.len()));
    }
    let row = |i: usize| &sim[i * sentences..(i + 1) * sentences];
    let nan = |v: T| Into::<f64>::into(v).is_nan();
    let argmax = |i: usize| -> Option<usize> {
        let mut best: Option<usize> = None;
        for (j, &v) in row(i).iter().enumerate() {
            if !nan(v) && best.is_none_or(|b| v > row(i)[b]) {
                best = Some(j);
            }
        }
        best
    };
    let mut out = vec![-1i64; images];
    let kept: Vec<usize> = (0..images).filter(|&i| argmax(i).is_some_and(|j| row(i)[j] >= threshold)).collect();
    if kept.is_empty() || sentences == 0 {
        return Ok(out);
    }
    let cost: Vec<f64> = kept.iter().flat_map(|&i| row(i).iter().map(|&v| v.into())).collect();
    let matched = linear_assignment(&without_nan(cost, kept.len().min(sentences)), kept.len(), sentences, true)?;
    for (k, &i) in kept.iter().enumerate() {
        out[i] = match matched[k] {
            Some(j) if !nan(row(i)[j]) => j as i64,
            _ => argmax(i).map_or(-1, |j| j as i64),
        };
    }
    Ok(out)
}

/// A maximising assignment's gains with each NaN cell replaced by a loss larger than any
/// `matches` cells of finite gains could make up, so the optimum uses as few as it can.
fn without_nan(mut gain: Vec<f64>, matches: usize) -> Vec<f64> {
    let finite = || gain.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = (finite().fold(0.0, f64::min), finite().fold(0.0, f64::max));
    let penalty = lo - (hi - lo + 1.0) * (matches as f64 + 1.0);
    for v in gain.iter_mut().filter(|v| v.is_nan()) {
        *v = penalty;
    }
    gain
}

/// Sentence index and cosine per image.
pub type Assigned = (Vec<i64>, Vec<f32>);

/// [`mmc4_assign`] over many documents: image and sentence embeddings with their offsets.
/// Returns, per image, its sentence index within its document (-1: dropped) and its cosine with
/// that sentence (its best cosine when dropped; NaN for a document without sentences).
pub fn mmc4_assign_docs(
    img: &[f32],
    img_offsets: &[i64],
    txt: &[f32],
    txt_offsets: &[i64],
    dim: usize,
    threshold: f32,
) -> Result<(Vec<i64>, Vec<f32>), String> {
    check_offsets(img_offsets, img.len() / dim.max(1), "image")?;
    check_offsets(txt_offsets, txt.len() / dim.max(1), "text")?;
    if img_offsets.len() != txt_offsets.len() {
        return Err("image and text offsets must cover the same documents".into());
    }
    let docs = img_offsets.len() - 1;
    let per_doc: Vec<Result<Assigned, String>> = (0..docs)
        .into_par_iter()
        .map(|d| {
            let (ni, nt) = (rows(img_offsets, d).len(), rows(txt_offsets, d).len());
            assign_scored(&block(img, rows(img_offsets, d), txt, rows(txt_offsets, d), dim), ni, nt, threshold)
        })
        .collect();
    concat_assigned(per_doc, img_offsets[docs] as usize)
}

/// The cosines [`mmc4_assign_rows`] takes, from image and sentence embeddings with their
/// document offsets (as [`mmc4_assign_docs`] computes them): each image's cosines with its
/// document's sentences, images in order, and each image's offset into them.
pub fn mmc4_similarity_rows(img: &[f32], img_offsets: &[i64], txt: &[f32], txt_offsets: &[i64], dim: usize) -> Result<(Vec<f32>, Vec<i64>), String> {
    check_offsets(img_offsets, img.len() / dim.max(1), "image")?;
    check_offsets(txt_offsets, txt.len() / dim.max(1), "text")?;
    if img_offsets.len() != txt_offsets.len() {
        return Err("image and text offsets must cover the same documents".into());
    }
    let docs = img_offsets.len() - 1;
    let blocks: Vec<Vec<f32>> = (0..docs).into_par_iter().map(|d| block(img, rows(img_offsets, d), txt, rows(txt_offsets, d), dim)).collect();
    let mut offsets = Vec::with_capacity(img_offsets[docs] as usize + 1);
    offsets.push(0i64);
    for d in 0..docs {
        let nt = if dim == 0 { 0 } else { rows(txt_offsets, d).len() as i64 };
        for _ in rows(img_offsets, d) {
            offsets.push(offsets[offsets.len() - 1] + nt);
        }
    }
    Ok((blocks.concat(), offsets))
}

/// [`mmc4_assign`] over many documents from their similarity rows: image `i`'s cosines with its
/// document's sentences are `sims[sim_offsets[i]..sim_offsets[i + 1]]`, and document `d` holds
/// images `img_offsets[d]..img_offsets[d + 1]` (all with as many cosines: its sentences). The
/// same results as [`mmc4_assign_docs`] given the same cosines; for assigning again among a
/// subset of each document's images.
pub fn mmc4_assign_rows(sims: &[f32], sim_offsets: &[i64], img_offsets: &[i64], threshold: f32) -> Result<Assigned, String> {
    check_offsets(sim_offsets, sims.len(), "similarity")?;
    check_offsets(img_offsets, sim_offsets.len() - 1, "image")?;
    let docs = img_offsets.len() - 1;
    let per_doc: Vec<Result<Assigned, String>> = (0..docs)
        .into_par_iter()
        .map(|d| {
            let imgs = rows(img_offsets, d);
            let (ni, start) = (imgs.len(), imgs.start);
            let nt = if ni > 0 { (sim_offsets[start + 1] - sim_offsets[start]) as usize } else { 0 };
            if (start..imgs.end).any(|i| (sim_offsets[i + 1] - sim_offsets[i]) as usize != nt) {
                return Err(format!("document {d}: its images have different numbers of cosines (one per sentence)"));
            }
            let (a, b) = (sim_offsets[start] as usize, sim_offsets[imgs.end] as usize);
            assign_scored(&sims[a..b], ni, nt, threshold)
        })
        .collect();
    concat_assigned(per_doc, img_offsets[docs] as usize)
}

/// One document's [`mmc4_assign`] with each image's cosine at its sentence (its best cosine when
/// dropped; NaN without sentences).
fn assign_scored(sim: &[f32], ni: usize, nt: usize, threshold: f32) -> Result<Assigned, String> {
    let a = mmc4_assign(sim, ni, nt, threshold)?;
    let score = (0..ni)
        .map(|i| {
            let r = &sim[i * nt..(i + 1) * nt];
            match a[i] {
                j if j >= 0 => r[j as usize],
                _ => r.iter().copied().filter(|v| !v.is_nan()).fold(f32::NAN, f32::max),
            }
        })
        .collect();
    Ok((a, score))
}

fn concat_assigned(per_doc: Vec<Result<Assigned, String>>, n: usize) -> Result<Assigned, String> {
    let (mut idx, mut score) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for r in per_doc {
        let (a, s) = r?;
        idx.extend(a);
        score.extend(s);
    }
    Ok((idx, score))
}

/// CoMM's image-sequence consistency of each document:
/// `F = mean_{i=2..N} cos(x_i, x_{i-1}) - mean_{i > j + 1} cos(x_i, x_j)`, NaN below 3 images.
pub fn sequence_consistency(emb: &[f32], offsets: &[i64], dim: usize) -> Result<Vec<f64>, String> {
    per_document(emb, offsets, dim, |_, u, n| {
        if n < 3 {
            return f64::NAN;
        }
        let x = |i: usize| &u[i * dim..(i + 1) * dim];
        let adjacent = (1..n).map(|i| dot(x(i), x(i - 1))).sum::<f64>() / (n - 1) as f64;
        let (mut far, mut count) = (0.0, 0usize);
        for i in 2..n {
            for j in 0..i - 1 {
                far += dot(x(i), x(j));
                count += 1;
            }
        }
        adjacent - far / count as f64
    })
}

/// `f(document, its unit rows, their count)` for every document, in parallel.
fn per_document<T: Send>(emb: &[f32], offsets: &[i64], dim: usize, f: impl Fn(usize, &[f64], usize) -> T + Sync) -> Result<Vec<T>, String> {
    check_offsets(offsets, emb.len() / dim.max(1), "embedding")?;
    Ok((0..offsets.len() - 1)
        .into_par_iter()
        .map(|d| {
            let u = unit_rows(emb, dim, rows(offsets, d));
            let n = u.len() / dim.max(1);
            f(d, &u, n)
        })
        .collect())
}

/// Text coherence of each document from its step embeddings in order: the mean and the
/// minimum cosine of consecutive steps, and the margin of that mean over the mean consecutive
/// cosine of the same steps in `shuffles` random orders (seeded by `seed` and the document's
/// index, so results do not depend on threads). Mean and minimum are NaN below 2 steps, the
/// margin below 3 (with 2 steps every order has the same consecutive pair: no order test).
/// The margin is the mean over shuffles of (original - shuffled), each side summed in sorted
/// order, so a shuffle with the same consecutive pairs (a reversal) contributes exactly 0,
/// never a rounding difference that a `margin > 0` filter would read as a verdict.
pub fn coherence(emb: &[f32], offsets: &[i64], dim: usize, shuffles: usize, seed: u64, keys: Option<&[u64]>) -> Result<Vec<[f64; 3]>, String> {
    if let Some(k) = keys {
        if k.len() + 1 != offsets.len().max(1) {
            return Err(format!("keys must hold one value per document ({}), got {}", offsets.len().saturating_sub(1), k.len()));
        }
    }
    per_document(emb, offsets, dim, |d, u, n| {
        if n < 2 {
            return [f64::NAN; 3];
        }
        let x = |i: usize| &u[i * dim..(i + 1) * dim];
        // dot(a, b) == dot(b, a) bit for bit (the same products summed in the same order).
        let consecutive = |order: &[usize]| order.windows(2).map(|w| dot(x(w[0].min(w[1])), x(w[0].max(w[1])))).collect::<Vec<f64>>();
        // The mean of the multiset, independent of the order the pairs came in.
        let canonical_mean = |mut c: Vec<f64>| {
            c.sort_by(f64::total_cmp);
            c.iter().sum::<f64>() / c.len() as f64
        };
        let identity: Vec<usize> = (0..n).collect();
        let c = consecutive(&identity);
        let mean = c.iter().sum::<f64>() / c.len() as f64;
        // NaN (a zero or NaN embedding) makes the minimum NaN too, as it makes the mean
        // (`f64::min` would skip it, and an all-NaN document would get +inf).
        let min = c.iter().copied().fold(f64::INFINITY, |a, b| if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) });
        if n < 3 || shuffles == 0 {
            return [mean, min, f64::NAN];
        }
        let original = canonical_mean(c);
        let key = keys.map_or(d as u64, |k| k[d]);
        let mut rng = SplitMix64(seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut order = identity;
        let mut gap = 0.0;
        for _ in 0..shuffles {
            for i in (1..n).rev() {
                order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
            }
            gap += original - canonical_mean(consecutive(&order));
        }
        [mean, min, gap / shuffles as f64]
    })
}

/// For each row of `queries`, the `k` rows of `keys` with the highest cosine, best first (ties:
/// the lower key index first; NaN cosines never ranked): `(indices, scores)`, row-major
/// `queries x k`, padded with -1 / NaN where fewer keys qualify. Cosines are float32 products
/// of unit rows, as in [`mmc4_assign_docs`]. Brute force: every query against every key.
pub fn top_k(queries: &[f32], keys: &[f32], dim: usize, k: usize) -> Result<(Vec<i64>, Vec<f32>), String> {
    if dim == 0 || !queries.len().is_multiple_of(dim) || !keys.len().is_multiple_of(dim) {
        return Err(format!("queries and keys must be row-major matrices of width {dim}"));
    }
    let (nq, nk) = (queries.len() / dim, keys.len() / dim);
    let uk = unit_rows_f32(keys, dim, 0..nk);
    let rows: Vec<(Vec<i64>, Vec<f32>)> = (0..nq)
        .into_par_iter()
        .map(|q| {
            let uq = unit_rows_f32(queries, dim, q..q + 1);
            let mut scored: Vec<(f32, usize)> =
                uk.chunks_exact(dim).map(|y| dot32(&uq, y)).enumerate().filter(|(_, s)| !s.is_nan()).map(|(i, s)| (s, i)).collect();
            let better = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
            if scored.len() > k && k > 0 {
                scored.select_nth_unstable_by(k - 1, better);
            }
            scored.truncate(k);
            scored.sort_unstable_by(better);
            let mut idx: Vec<i64> = scored.iter().map(|&(_, i)| i as i64).collect();
            let mut val: Vec<f32> = scored.iter().map(|&(s, _)| s).collect();
            idx.resize(k, -1);
            val.resize(k, f32::NAN);
            (idx, val)
        })
        .collect();
    Ok((rows.iter().flat_map(|r| r.0.iter().copied()).collect(), rows.iter().flat_map(|r| r.1.iter().copied()).collect()))
}

/// A small, well-mixed generator (Steele et al.'s SplitMix64), for seeded shuffles.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_ranks_by_cosine_with_ties_to_the_lower_index() {
        // Keys: x, y, x again (tie with key 0), -x; a zero key gives NaN and is never ranked.
        let keys = [1.0, 0.0, 0.0, 1.0, 2.0, 0.0, -1.0, 0.0, 0.0, 0.0];
        let (idx, val) = top_k(&[3.0, 0.0, 1.0, 1.0], &keys, 2, 3).unwrap();
        assert_eq!(&idx[..3], &[0, 2, 1]);
        assert_eq!(val[0], 1.0);
        assert!((val[2] - 0.0).abs() < 1e-7);
        assert_eq!(&idx[3..5], &[0, 1]);
        let (idx, val) = top_k(&[1.0, 0.0], &keys, 2, 6).unwrap();
        assert_eq!(idx, vec![0, 2, 1, 3, -1, -1]);
        assert!(val[4].is_nan());
        assert!(top_k(&[1.0, 0.0, 0.0], &keys, 2, 1).is_err());
    }

    #[test]
    fn offsets_are_checked() {
        assert!(check_offsets(&[0, 2, 2, 5], 5, "x").is_ok());
        assert!(check_offsets(&[0, 3, 2, 5], 5, "x").is_err());
        assert!(check_offsets(&[1, 5], 5, "x").is_err());
        assert!(check_offsets(&[0, 4], 5, "x").is_err());
    }

    #[test]
    fn sequence_consistency_follows_the_formula() {
        // Three unit vectors: cos(x2, x1) = 1, cos(x3, x2) = 0, cos(x3, x1) = 0.
        let emb = [1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 1.0, 1.0];
        let f = sequence_consistency(&emb, &[0, 3, 4], 2).unwrap();
        assert!((f[0] - (0.5 - 0.0)).abs() < 1e-12);
        assert!(f[1].is_nan());
    }

    #[test]
    fn coherence_of_an_ordered_sequence_beats_its_shuffles() {
        // Points along an arc: neighbours are close, far ends are not.
        let n = 12;
        let emb: Vec<f32> = (0..n)
            .flat_map(|i| {
                let a = i as f32 * 0.25;
                [a.cos(), a.sin()]
            })
            .collect();
        let r = coherence(&emb, &[0, n as i64], 2, 8, 1, None).unwrap()[0];
        assert!((r[0] - (0.25f64).cos()).abs() < 1e-6 && (r[1] - r[0]).abs() < 1e-6);
        assert!(r[2] > 0.1, "{r:?}");
        assert_eq!(coherence(&emb, &[0, n as i64], 2, 8, 1, None).unwrap(), vec![r]);
        assert!(coherence(&emb[..2], &[0, 1], 2, 8, 1, None).unwrap()[0][0].is_nan());
    }

    #[test]
    fn keyed_shuffles_follow_the_key_not_the_position() {
        // The same document (same key) gets the same margin wherever it sits in the batch;
        // without keys the position seeds it, so the same document at another index differs.
        let mut rng = SplitMix64(5);
        let (n, dim) = (6usize, 8usize);
        let doc: Vec<f32> = (0..n * dim).map(|_| (rng.next() % 2001) as f32 / 1000.0 - 1.0).collect();
        let other: Vec<f32> = (0..n * dim).map(|_| (rng.next() % 2001) as f32 / 1000.0 - 1.0).collect();
        let alone = coherence(&doc, &[0, n as i64], dim, 4, 9, Some(&[42])).unwrap()[0];
        let both: Vec<f32> = other.iter().chain(doc.iter()).copied().collect();
        let offsets = [0, n as i64, 2 * n as i64];
        let keyed = coherence(&both, &offsets, dim, 4, 9, Some(&[7, 42])).unwrap();
        assert_eq!(keyed[1], alone);
        let positional = coherence(&both, &offsets, dim, 4, 9, None).unwrap();
        assert_ne!(positional[1][2], coherence(&doc, &[0, n as i64], dim, 4, 9, None).unwrap()[0][2]);
        assert!(coherence(&both, &offsets, dim, 4, 9, Some(&[1])).is_err());
    }

    #[test]
    fn two_steps_have_a_mean_but_no_order_test() {
        // With two steps every order has the same consecutive pair: the margin was 0 +- one
        // ulp before (a `margin > 0` filter dropped such documents at random); now it is NaN.
        let mut rng = SplitMix64(7);
        let emb: Vec<f32> = (0..2000 * 2 * 16).map(|_| (rng.next() % 2001) as f32 / 1000.0 - 1.0).collect();
        let offsets: Vec<i64> = (0..=2000).map(|d| d * 2).collect();
        for r in coherence(&emb, &offsets, 16, 8, 0, None).unwrap() {
            assert!(r[0].is_finite() && r[0] == r[1] && r[2].is_nan(), "{r:?}");
        }
    }

    #[test]
    fn a_shuffle_with_the_same_consecutive_pairs_adds_exactly_zero() {
        // Four steps, one shuffle per document: the identity and the reversal (2 of the 24
        // orders) keep the pairs {01, 12, 23}; their margin must be exactly 0 (summing the
        // three cosines in another order left 0 +- one ulp). Every other order's margin is its
        // exact value.
        let mut rng = SplitMix64(11);
        let (docs, dim) = (12_000, 32);
        let emb: Vec<f32> = (0..docs * 4 * dim).map(|_| (rng.next() % 2001) as f32 / 1000.0 - 1.0).collect();
        let offsets: Vec<i64> = (0..=docs as i64).map(|d| d * 4).collect();
        let unit = |v: &[f32]| {
            let n = v.iter().map(|a| (*a as f64) * (*a as f64)).sum::<f64>().sqrt();
            v.iter().map(|a| *a as f64 / n).collect::<Vec<f64>>()
        };
        let mut orders = vec![];
        for a in 0..4 {
            for b in 0..4 {
                for c in 0..4 {
                    for d in 0..4 {
                        let o = [a, b, c, d];
                        if (0..4).all(|i| o.contains(&i)) && o != [0, 1, 2, 3] && o != [3, 2, 1, 0] {
                            orders.push(o);
                        }
                    }
                }
            }
        }
        let mut zero = 0;
        for (d, r) in coherence(&emb, &offsets, dim, 1, 3, None).unwrap().iter().enumerate() {
            let x: Vec<Vec<f64>> = (0..4).map(|i| unit(&emb[(d * 4 + i) * dim..(d * 4 + i + 1) * dim])).collect();
            let c = |a: usize, b: usize| x[a].iter().zip(&x[b]).map(|(p, q)| p * q).sum::<f64>();
            let original = (c(0, 1) + c(1, 2) + c(2, 3)) / 3.0;
            let other: Vec<f64> = orders.iter().map(|o| original - (c(o[0], o[1]) + c(o[1], o[2]) + c(o[2], o[3])) / 3.0).collect();
            if r[2] == 0.0 {
                zero += 1;
            } else {
                assert!(other.iter().any(|m| m.abs() > 1e-9 && (m - r[2]).abs() < 1e-6), "{d}: {r:?}");
            }
        }
        assert!((700..1300).contains(&zero), "{zero}");
    }

    #[test]
    fn mmc4_drops_weak_images_then_assigns_then_sends_leftovers_to_their_argmax() {
        // 4 images x 2 sentences; image 3 is below 0.15 everywhere.
        let sim = [0.9, 0.2, 0.8, 0.3, 0.5, 0.15, 0.1, 0.14];
        assert_eq!(mmc4_assign(&sim, 4, 2, 0.15).unwrap(), vec![0, 1, 0, -1]);
        // Exactly the threshold is kept.
        assert_eq!(mmc4_assign(&[0.15], 1, 1, 0.15).unwrap(), vec![0]);
        assert_eq!(mmc4_assign(&[], 2, 0, 0.15).unwrap(), vec![-1, -1]);
    }

    #[test]
    fn mmc4_from_similarity_rows_equals_mmc4_from_embeddings() {
        // Two documents (3 images x 2 sentences, 1 image x 0 sentences), 4-d embeddings.
        let img: Vec<f32> = (0..16).map(|k| ((k * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let txt: Vec<f32> = (0..8).map(|k| ((k * 5 % 7) as f32 - 3.0) / 2.0).collect();
        let (io, to) = ([0i64, 3, 4], [0i64, 2, 2]);
        let want = mmc4_assign_docs(&img, &io, &txt, &to, 4, -1.0).unwrap();
        let (sims, offsets) = mmc4_similarity_rows(&img, &io, &txt, &to, 4).unwrap();
        assert_eq!((sims.len(), offsets), (6, vec![0, 2, 4, 6, 6]));
        let got = mmc4_assign_rows(&sims, &[0, 2, 4, 6, 6], &io, -1.0).unwrap();
        assert_eq!(got.0, want.0);
        assert_eq!(got.1[..3], want.1[..3]);
        assert!(got.1[3].is_nan() && want.1[3].is_nan() && got.0[3] == -1);
        assert!(mmc4_assign_rows(&sims, &[0, 2, 3, 6, 6], &io, 0.15).unwrap_err().contains("different numbers"));
    }

    #[test]
    fn mmc4_never_matches_an_unknown_similarity() {
        // Image 0's best is sentence 1, but image 1 can only use sentence 1: the optimum over
        // known cells gives image 0 sentence 0 and image 1 sentence 1.
        let sim = [0.5, 0.6, f32::NAN, 0.9];
        assert_eq!(mmc4_assign(&sim, 2, 2, 0.15).unwrap(), vec![0, 1]);
        // Both images know only sentence 0: one takes it, the other is left over and goes to
        // its best known sentence too (never to the NaN one).
        let sim = [0.5, f32::NAN, 0.4, f32::NAN];
        assert_eq!(mmc4_assign(&sim, 2, 2, 0.15).unwrap(), vec![0, 0]);
        // A row of NaN has no best similarity: dropped.
        assert_eq!(mmc4_assign(&[f32::NAN, f32::NAN], 1, 2, 0.15).unwrap(), vec![-1]);
    }
}
