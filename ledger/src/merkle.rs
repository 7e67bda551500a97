//! Merkle trees in the shape of RFC 6962 (Certificate Transparency): leaves are
//! hashed with a `0x00` prefix, inner nodes with `0x01`, and a tree of `n`
//! leaves splits at the largest power of two below `n`. Proofs are audit paths
//! listed from the leaf upwards.

use crate::hash::{tag, Canon, Hash};
use serde::{Deserialize, Serialize};

/// Hash of two children.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut c = Canon::new(tag::MERKLE_NODE);
    c.hash(left).hash(right);
    c.finish()
}

/// Root of the tree over already-hashed leaves. The empty tree's root is the
/// hash of the leaf tag alone, as in RFC 6962 (`SHA-256("")` there; tagged here).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Canon::new(tag::MERKLE_LEAF).finish(),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Largest power of two strictly smaller than `n` (for `n >= 2`).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1usize;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// An inclusion proof: the sibling hashes from the leaf up to the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub path: Vec<Hash>,
}

/// Builds the audit path for `index`. Returns `None` if the index is out of range.
pub fn prove(leaves: &[Hash], index: usize) -> Option<InclusionProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    path_rec(leaves, index, &mut path);
    Some(InclusionProof {
        leaf_index: index as u64,
        tree_size: leaves.len() as u64,
        path,
    })
}

/// Every leaf's proof at once: `O(n)` node hashes in all (one per inner
/// node) instead of `O(n)` per proof, for answering a whole block.
pub fn prove_all(leaves: &[Hash]) -> Vec<InclusionProof> {
    let mut paths = vec![Vec::new(); leaves.len()];
    subtree(leaves, &mut paths);
    let n = leaves.len() as u64;
    paths
        .into_iter()
        .enumerate()
        .map(|(i, path)| InclusionProof {
            leaf_index: i as u64,
            tree_size: n,
            path,
        })
        .collect()
}

/// The root of `leaves`, appending each leaf's sibling on the way up to its
/// path (bottom first, as `prove` lists them).
fn subtree(leaves: &[Hash], paths: &mut [Vec<Hash>]) -> Hash {
    match leaves.len() {
        0 => Canon::new(tag::MERKLE_LEAF).finish(),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            let (left_paths, right_paths) = paths.split_at_mut(k);
            let left = subtree(&leaves[..k], left_paths);
            let right = subtree(&leaves[k..], right_paths);
            for p in left_paths.iter_mut() {
                p.push(right);
            }
            for p in right_paths.iter_mut() {
                p.push(left);
            }
            node_hash(&left, &right)
        }
    }
}

fn path_rec(leaves: &[Hash], index: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if index < k {
        path_rec(&leaves[..k], index, out);
        out.push(root(&leaves[k..]));
    } else {
        path_rec(&leaves[k..], index - k, out);
        out.push(root(&leaves[..k]));
    }
}

/// Recomputes the root from a leaf and its proof (RFC 9162, section 2.1.3.2).
/// Returns `None` when the proof's shape does not fit its tree size.
pub fn root_from_proof(leaf: &Hash, proof: &InclusionProof) -> Option<Hash> {
    if proof.leaf_index >= proof.tree_size {
        return None;
    }
    let mut f_n = proof.leaf_index;
    let mut s_n = proof.tree_size - 1;
    let mut r = *leaf;
    for p in &proof.path {
        if s_n == 0 {
            return None;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return None;
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                let mut c = Canon::new(tag::MERKLE_LEAF);
                c.u64(i as u64);
                c.finish()
            })
            .collect()
    }

    #[test]
    fn every_proof_of_every_size_round_trips() {
        for n in 1..70 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = prove(&l, i).unwrap();
                assert_eq!(root_from_proof(&l[i], &p), Some(r), "n={n} i={i}");
            }
        }
    }

    #[test]
    fn all_proofs_at_once_equal_one_by_one() {
        for n in 0..40 {
            let l = leaves(n);
            let all = prove_all(&l);
            assert_eq!(all.len(), n);
            for (i, p) in all.iter().enumerate() {
                assert_eq!(Some(p.clone()), prove(&l, i), "n={n} i={i}");
            }
        }
    }

    #[test]
    fn proof_fails_for_wrong_leaf_index_or_size() {
        let l = leaves(13);
        let r = root(&l);
        let p = prove(&l, 5).unwrap();
        assert_ne!(root_from_proof(&l[6], &p), Some(r));
        let mut wrong_index = p.clone();
        wrong_index.leaf_index = 4;
        assert_ne!(root_from_proof(&l[5], &wrong_index), Some(r));
        let mut wrong_size = p.clone();
        wrong_size.tree_size = 40;
        assert_ne!(root_from_proof(&l[5], &wrong_size), Some(r));
        let mut short = p;
        short.path.pop();
        assert_ne!(root_from_proof(&l[5], &short), Some(r));
        assert!(prove(&l, 13).is_none());
    }

    #[test]
    fn root_distinguishes_order_and_count() {
        let l = leaves(4);
        let mut swapped = l.clone();
        swapped.swap(1, 2);
        assert_ne!(root(&l), root(&swapped));
        assert_ne!(root(&l[..3]), root(&l));
        assert_ne!(root(&[]), root(&l[..1]));
    }
}
