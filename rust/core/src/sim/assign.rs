//! Exact rectangular linear assignment: the minimum-cost matching of every row of an `r x c`
//! cost matrix (`r <= c`, else transposed) to a distinct column, by shortest augmenting paths
//! with dual variables (Jonker-Volgenant / Crouse), the optimum `scipy.optimize.
//! linear_sum_assignment` finds. Costs must be finite.

/// The column of each row in a minimum-cost assignment of a row-major `rows x cols` matrix
/// (`None` for the rows left out when there are more rows than columns), or why there is none.
pub fn linear_assignment(cost: &[f64], rows: usize, cols: usize, maximize: bool) -> Result<Vec<Option<usize>>, String> {
    if cost.len() != rows * cols {
        return Err(format!("cost holds {} values, not {rows} x {cols}", cost.len()));
    }
    if cost.iter().any(|v| !v.is_finite()) {
        return Err("cost matrix contains NaN or infinite values".into());
    }
    if rows == 0 || cols == 0 {
        return Ok(vec![None; rows]);
    }
    let sign = if maximize { -1.0 } else { 1.0 };
    if rows <= cols {
        let c: Vec<f64> = cost.iter().map(|v| sign * v).collect();
        Ok(solve(&c, rows, cols).into_iter().map(Some).collect())
    } else {
        // Transpose: assign each column a row, then read it back per row.
        let mut t = vec![0.0; rows * cols];
        for i in 0..rows {
            for j in 0..cols {
                t[j * rows + i] = sign * cost[i * cols + j];
            }
        }
        let row_of_col = solve(&t, cols, rows);
        let mut out = vec![None; rows];
        for (j, &i) in row_of_col.iter().enumerate() {
            out[i] = Some(j);
        }
        Ok(out)
    }
}

const NONE: usize = usize::MAX;

/// `nr <= nc`, finite costs: the column of every row.
fn solve(cost: &[f64], nr: usize, nc: usize) -> Vec<usize> {
    let (mut u, mut v) = (vec![0.0f64; nr], vec![0.0f64; nc]);
    let (mut col4row, mut row4col) = (vec![NONE; nr], vec![NONE; nc]);
    let mut shortest = vec![f64::INFINITY; nc];
    let mut path = vec![NONE; nc];
    let (mut in_rows, mut in_cols) = (vec![false; nr], vec![false; nc]);
    let mut remaining: Vec<usize> = Vec::with_capacity(nc);
    for start in 0..nr {
        shortest.fill(f64::INFINITY);
        path.fill(NONE);
        in_rows.fill(false);
        in_cols.fill(false);
        remaining.clear();
        remaining.extend((0..nc).rev());
        let (mut min_val, mut i, mut sink) = (0.0f64, start, NONE);
        // Grow a tree of tight edges (Dijkstra on reduced costs) until it reaches a free column.
        while sink == NONE {
            in_rows[i] = true;
            let (mut lowest, mut best) = (f64::INFINITY, NONE);
            for (k, &j) in remaining.iter().enumerate() {
                let r = min_val + cost[i * nc + j] - u[i] - v[j];
                if r < shortest[j] {
                    path[j] = i;
                    shortest[j] = r;
                }
                if shortest[j] < lowest || (shortest[j] == lowest && row4col[j] == NONE) {
                    lowest = shortest[j];
                    best = k;
                }
            }
            min_val = lowest;
            let j = remaining.swap_remove(best);
            in_cols[j] = true;
            if row4col[j] == NONE {
                sink = j;
            } else {
                i = row4col[j];
            }
        }
        u[start] += min_val;
        for r in 0..nr {
            if in_rows[r] && r != start {
                u[r] += min_val - shortest[col4row[r]];
            }
        }
        for c in 0..nc {
            if in_cols[c] {
                v[c] -= min_val - shortest[c];
            }
        }
        // Flip the path: every row on it takes the next column.
        let mut j = sink;
        loop {
            let r = path[j];
            row4col[j] = r;
            std::mem::swap(&mut col4row[r], &mut j);
            if r == start {
                break;
            }
        }
    }
    col4row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(cost: &[f64], cols: usize, a: &[Option<usize>]) -> f64 {
        a.iter().enumerate().filter_map(|(i, j)| j.map(|j| cost[i * cols + j])).sum()
    }

    /// The best total over every injective assignment (rows <= cols), by brute force.
    fn brute(cost: &[f64], rows: usize, cols: usize) -> f64 {
        fn go(cost: &[f64], rows: usize, cols: usize, i: usize, used: &mut Vec<bool>) -> f64 {
            if i == rows {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for j in 0..cols {
                if !used[j] {
                    used[j] = true;
                    best = best.min(cost[i * cols + j] + go(cost, rows, cols, i + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        go(cost, rows, cols, 0, &mut vec![false; cols])
    }

    #[test]
    fn finds_the_optimum_on_random_rectangles() {
        let mut state = 7u64;
        let mut rnd = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1000) as f64 / 100.0
        };
        for (rows, cols) in [(1, 1), (1, 5), (3, 3), (4, 6), (6, 6), (2, 7), (5, 8)] {
            for _ in 0..20 {
                let cost: Vec<f64> = (0..rows * cols).map(|_| rnd()).collect();
                let a = linear_assignment(&cost, rows, cols, false).unwrap();
                let mut cols_used: Vec<usize> = a.iter().map(|j| j.unwrap()).collect();
                cols_used.sort();
                cols_used.dedup();
                assert_eq!(cols_used.len(), rows);
                assert!((total(&cost, cols, &a) - brute(&cost, rows, cols)).abs() < 1e-9, "{rows}x{cols}");
            }
        }
    }

    #[test]
    fn tall_matrices_leave_rows_out_and_maximize_flips_the_sign() {
        let cost = [1.0, 0.0, 0.0, 1.0, 0.5, 0.9];
        let a = linear_assignment(&cost, 3, 2, true).unwrap();
        assert_eq!(a, vec![Some(0), Some(1), None]);
        assert_eq!(linear_assignment(&cost, 3, 2, false).unwrap(), vec![Some(1), Some(0), None]);
        assert!(linear_assignment(&[f64::NAN], 1, 1, false).is_err());
        assert_eq!(linear_assignment(&[], 0, 3, false).unwrap(), vec![]);
    }
}
