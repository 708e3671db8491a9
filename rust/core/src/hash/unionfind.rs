//! Union-find over row indices (path halving, union by size).

pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        assert!(n <= u32::MAX as usize, "union-find holds at most 2^32 - 1 items");
        UnionFind { parent: (0..n as u32).collect(), size: vec![1; n] }
    }

    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    /// Joins the sets of `a` and `b`; returns true when they were apart.
    pub fn union(&mut self, a: u32, b: u32) -> bool {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        if self.size[ra as usize] < self.size[rb as usize] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb as usize] = ra;
        self.size[ra as usize] += self.size[rb as usize];
        true
    }

    /// For every item, the representative of its set: the member with the smallest
    /// `(rank(i), i)`.
    pub fn representatives<K: PartialOrd + Copy>(&mut self, rank: impl Fn(usize) -> K) -> Vec<u32> {
        let n = self.parent.len();
        let mut best: Vec<u32> = (0..n as u32).collect();
        for i in 0..n {
            let r = self.find(i as u32) as usize;
            let b = best[r] as usize;
            let (ki, kb) = (rank(i), rank(b));
            if ki < kb || (ki == kb && i < b) {
                best[r] = i as u32;
            }
        }
        (0..n).map(|i| best[self.find(i as u32) as usize]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn representatives_are_smallest_index_or_best_rank() {
        let mut uf = UnionFind::new(5);
        uf.union(3, 1);
        uf.union(4, 3);
        assert_eq!(uf.representatives(|_| 0), vec![0, 1, 2, 1, 1]);
        let ranks = [0.0, 5.0, 0.0, 5.0, 1.0];
        assert_eq!(uf.representatives(|i| ranks[i]), vec![0, 4, 2, 4, 4]);
    }
}
