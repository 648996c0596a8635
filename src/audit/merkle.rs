//! The RFC 6962 Merkle tree (RFC 9162 section 2.1): leaf and node hashes,
//! tree heads for any size, inclusion and consistency proofs, and their
//! verification. Pure computation over hashes; never touches files.
//!
//! `Tree` keeps every complete aligned subtree's hash (the leaves, then each
//! level of pairs), about 64 bytes per leaf. With those, the hash of any
//! subtree RFC 6962 recurses into takes O(log n) node hashes, so a tree head
//! is O(log n) and a proof O(log² n).

use crate::crypto::{Sha256, sha256};

/// A SHA-256 output: a leaf, node or tree head hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    sha256(b"")
}

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(&[0x00]);
    hasher.update(data);
    hasher.finish()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(&[0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finish()
}

/// The largest power of two smaller than `n` (RFC 6962's split point `k`).
/// `n` must be at least 2.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// An append-only Merkle tree over leaf hashes.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    /// `levels[h][j]` is the hash of the complete subtree of `2^h` leaves
    /// starting at leaf `j * 2^h`; `levels[0]` holds the leaf hashes.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(node);
            if row.len() % 2 == 1 {
                return;
            }
            node = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// The leaf hash at `index`, if the tree has one.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels
            .first()?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// The tree head of the first `size` leaves (`MTH(D[0:size])`).
    ///
    /// # Panics
    /// If `size` is larger than the tree.
    pub fn root(&self, size: u64) -> Hash {
        assert!(
            size <= self.size(),
            "tree of {} has no head at {size}",
            self.size()
        );
        if size == 0 {
            return empty_root();
        }
        self.subtree(0, size)
    }

    /// `MTH(D[start:end])` for a subtree RFC 6962 recursion reaches: `start`
    /// is a multiple of the largest power of two not above `end - start`.
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            return self.levels[level][(start >> level) as usize];
        }
        let k = split(n);
        node_hash(
            &self.subtree(start, start + k),
            &self.subtree(start + k, end),
        )
    }

    /// The audit path of leaf `index` in the tree of the first `size` leaves
    /// (RFC 6962 section 2.1.1), or `None` unless `index < size <= self.size()`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if index >= size || size > self.size() {
            return None;
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Some(proof)
    }

    fn path(&self, index: u64, start: u64, end: u64, proof: &mut Vec<Hash>) {
        let n = end - start;
        if n == 1 {
            return;
        }
        let k = split(n);
        if index < start + k {
            self.path(index, start, start + k, proof);
            proof.push(self.subtree(start + k, end));
        } else {
            self.path(index, start + k, end, proof);
            proof.push(self.subtree(start, start + k));
        }
    }

    /// The consistency proof between the trees of the first `old` and `new`
    /// leaves (RFC 6962 section 2.1.2), or `None` unless
    /// `old <= new <= self.size()`. Empty when `old` is 0 or equals `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        if old > new || new > self.size() {
            return None;
        }
        let mut proof = Vec::new();
        if old > 0 {
            self.subproof(old, 0, new, true, &mut proof);
        }
        Some(proof)
    }

    fn subproof(&self, m: u64, start: u64, end: u64, whole: bool, proof: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !whole {
                proof.push(self.subtree(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, proof);
            proof.push(self.subtree(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, proof);
            proof.push(self.subtree(start, start + k));
        }
    }
}

/// Whether `proof` shows that `leaf` is leaf `index` of the tree of `size`
/// leaves whose head is `root` (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// Whether `proof` shows that the tree of `old` leaves with head `old_root`
/// is a prefix of the tree of `new` leaves with head `new_root` (RFC 9162
/// section 2.1.4.2). From the empty tree and between equal sizes the proof
/// must be empty (and equal sizes need equal heads).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    let Some((first, rest)) = proof.split_first() else {
        return false;
    };
    // When `old` is a power of two its head is itself the first node of the
    // path, so the proof leaves it out.
    let (seed, path) = if old.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in path {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && fr == *old_root && sr == *new_root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Hash {
        hex::decode(text).unwrap().try_into().unwrap()
    }

    /// The certificate-transparency reference inputs (also in
    /// transparency-dev/merkle's test data).
    fn reference_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|data| leaf_hash(&hex::decode(data).unwrap()))
        .collect()
    }

    /// Tree heads of the reference inputs for sizes 0 to 8.
    const REFERENCE_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn tree_of(leaves: &[Hash]) -> Tree {
        let mut tree = Tree::new();
        for leaf in leaves {
            tree.push(*leaf);
        }
        tree
    }

    // The definitions of RFC 6962 section 2.1, written as directly as
    // possible over slices, to check the cached tree against.
    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n == 1 {
            return Vec::new();
        }
        let k = split(n as u64) as usize;
        if m < k {
            let mut path = naive_path(m, &leaves[..k]);
            path.push(naive_root(&leaves[k..]));
            path
        } else {
            let mut path = naive_path(m - k, &leaves[k..]);
            path.push(naive_root(&leaves[..k]));
            path
        }
    }

    fn naive_subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole {
                Vec::new()
            } else {
                vec![naive_root(leaves)]
            };
        }
        let k = split(n as u64) as usize;
        if m <= k {
            let mut proof = naive_subproof(m, &leaves[..k], whole);
            proof.push(naive_root(&leaves[k..]));
            proof
        } else {
            let mut proof = naive_subproof(m - k, &leaves[k..], false);
            proof.push(naive_root(&leaves[..k]));
            proof
        }
    }

    fn synthetic_leaves(n: usize) -> Vec<Hash> {
        (0..n as u32).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        for (n, k) in [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1000, 512)] {
            assert_eq!(split(n), k, "n = {n}");
        }
        assert_eq!(split((1 << 63) + 1), 1 << 63);
    }

    #[test]
    fn reference_tree_heads() {
        let leaves = reference_leaves();
        let tree = tree_of(&leaves);
        for (size, want) in REFERENCE_ROOTS.iter().enumerate() {
            assert_eq!(hex::encode(tree.root(size as u64)), *want, "size {size}");
        }
        assert_eq!(hex::encode(empty_root()), REFERENCE_ROOTS[0]);
        // A one-leaf tree's head is the leaf hash of the empty string.
        assert_eq!(hex::encode(leaf_hash(b"")), REFERENCE_ROOTS[1]);
    }

    #[test]
    fn reference_inclusion_proofs() {
        let tree = tree_of(&reference_leaves());
        let cases: [(u64, u64, &[&str]); 5] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in cases {
            let proof = tree.inclusion_proof(index, size).unwrap();
            let got: Vec<String> = proof.iter().map(hex::encode).collect();
            assert_eq!(got, want, "leaf {index} of {size}");
            let root = unhex(REFERENCE_ROOTS[size as usize]);
            let leaf = tree.leaf(index).unwrap();
            assert!(verify_inclusion(&leaf, index, size, &proof, &root));
        }
    }

    #[test]
    fn reference_consistency_proofs() {
        let tree = tree_of(&reference_leaves());
        let cases: [(u64, u64, &[&str]); 5] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                2,
                8,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let proof = tree.consistency_proof(old, new).unwrap();
            let got: Vec<String> = proof.iter().map(hex::encode).collect();
            assert_eq!(got, want, "{old} -> {new}");
            let (old_root, new_root) = (
                unhex(REFERENCE_ROOTS[old as usize]),
                unhex(REFERENCE_ROOTS[new as usize]),
            );
            assert!(verify_consistency(old, new, &old_root, &new_root, &proof));
        }
    }

    #[test]
    fn cached_tree_agrees_with_the_definitions_up_to_64_leaves() {
        let leaves = synthetic_leaves(64);
        let tree = tree_of(&leaves);
        for n in 0..=64usize {
            assert_eq!(tree.root(n as u64), naive_root(&leaves[..n]), "head {n}");
            for m in 0..n {
                assert_eq!(
                    tree.inclusion_proof(m as u64, n as u64).unwrap(),
                    naive_path(m, &leaves[..n]),
                    "path {m} of {n}"
                );
            }
            for m in 1..=n {
                assert_eq!(
                    tree.consistency_proof(m as u64, n as u64).unwrap(),
                    naive_subproof(m, &leaves[..n], true),
                    "consistency {m} -> {n}"
                );
            }
        }
    }

    #[test]
    fn every_inclusion_proof_up_to_64_verifies_and_mangled_ones_do_not() {
        let leaves = synthetic_leaves(64);
        let tree = tree_of(&leaves);
        let other = leaf_hash(b"not in the tree");
        for size in 1..=64u64 {
            let root = tree.root(size);
            for index in 0..size {
                let leaf = leaves[index as usize];
                let proof = tree.inclusion_proof(index, size).unwrap();
                assert!(
                    verify_inclusion(&leaf, index, size, &proof, &root),
                    "{index}/{size}"
                );

                assert!(!verify_inclusion(&other, index, size, &proof, &root));
                assert!(!verify_inclusion(&leaf, index, size, &proof, &other));
                assert!(!verify_inclusion(&leaf, size, size, &proof, &root));
                if size > 1 {
                    let wrong = if index == 0 { 1 } else { index - 1 };
                    assert!(
                        !verify_inclusion(&leaf, wrong, size, &proof, &root),
                        "{index}/{size}"
                    );
                    assert!(!verify_inclusion(&leaf, index, size * 2, &proof, &root));
                }
                let mut extended = proof.clone();
                extended.push(root);
                assert!(!verify_inclusion(&leaf, index, size, &extended, &root));
                if let Some((_, shorter)) = proof.split_last() {
                    assert!(!verify_inclusion(&leaf, index, size, shorter, &root));
                }
                for i in 0..proof.len() {
                    let mut flipped = proof.clone();
                    flipped[i][0] ^= 8;
                    assert!(!verify_inclusion(&leaf, index, size, &flipped, &root));
                }
            }
        }
        assert!(tree.inclusion_proof(0, 0).is_none());
        assert!(tree.inclusion_proof(64, 64).is_none());
        assert!(tree.inclusion_proof(0, 65).is_none());
    }

    #[test]
    fn every_consistency_proof_up_to_64_verifies_and_mangled_ones_do_not() {
        let leaves = synthetic_leaves(64);
        let tree = tree_of(&leaves);
        let roots: Vec<Hash> = (0..=64).map(|n| tree.root(n)).collect();
        let junk = leaf_hash(b"junk");
        for new in 0..=64u64 {
            for old in 0..=new {
                let proof = tree.consistency_proof(old, new).unwrap();
                let (r1, r2) = (&roots[old as usize], &roots[new as usize]);
                assert!(
                    verify_consistency(old, new, r1, r2, &proof),
                    "{old} -> {new}"
                );
                if old == 0 || old == new {
                    assert!(proof.is_empty());
                    continue;
                }
                assert!(!verify_consistency(old, new, &junk, r2, &proof));
                assert!(!verify_consistency(old, new, r1, &junk, &proof));
                assert!(!verify_consistency(old, new, r2, r1, &proof));
                assert!(!verify_consistency(old - 1, new, r1, r2, &proof));
                assert!(!verify_consistency(old, new * 2, r1, r2, &proof));
                assert!(!verify_consistency(new, old, r2, r1, &proof));
                assert!(!verify_consistency(old, new, r1, r2, &[]));
                let mut extended = proof.clone();
                extended.push(*r2);
                assert!(!verify_consistency(old, new, r1, r2, &extended));
                let mut prefixed = vec![proof[0]];
                prefixed.extend_from_slice(&proof);
                assert!(!verify_consistency(old, new, r1, r2, &prefixed));
                assert!(!verify_consistency(
                    old,
                    new,
                    r1,
                    r2,
                    &proof[..proof.len() - 1]
                ));
                for i in 0..proof.len() {
                    let mut flipped = proof.clone();
                    flipped[i][0] ^= 16;
                    assert!(
                        !verify_consistency(old, new, r1, r2, &flipped),
                        "{old}->{new} [{i}]"
                    );
                }
            }
        }
        // The two degenerate cases.
        assert!(verify_consistency(4, 4, &roots[4], &roots[4], &[]));
        assert!(!verify_consistency(4, 4, &roots[4], &roots[5], &[]));
        assert!(!verify_consistency(4, 4, &roots[4], &roots[4], &[junk]));
        assert!(!verify_consistency(0, 8, &roots[0], &roots[8], &[junk]));
        assert!(tree.consistency_proof(5, 4).is_none());
        assert!(tree.consistency_proof(0, 65).is_none());
    }

    #[test]
    fn the_tree_grows_one_leaf_at_a_time() {
        let leaves = synthetic_leaves(200);
        let mut tree = Tree::new();
        assert_eq!(tree.size(), 0);
        assert_eq!(tree.root(0), empty_root());
        for (i, leaf) in leaves.iter().enumerate() {
            tree.push(*leaf);
            assert_eq!(tree.size(), i as u64 + 1);
            assert_eq!(tree.root(tree.size()), naive_root(&leaves[..=i]));
        }
        assert_eq!(tree.leaf(199), Some(leaves[199]));
        assert_eq!(tree.leaf(200), None);
    }
}
