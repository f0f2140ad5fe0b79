//! Rendezvous (highest random weight) hashing: each node scores the key, the highest score
//! wins.
//!
//! Why rendezvous: the winner depends only on the key and the *set* of node ids (not their
//! order, not on any state), so every officeswitch instance with the same pool picks the
//! same node without talking; when a node leaves, only the keys it won move (each to its
//! runner-up); when a node joins, only the keys it now wins move (about 1/n of them). A
//! subset of eligible nodes (healthy, serving a version) is the same computation over
//! fewer candidates, with the same properties.
//!
//! # Why the scores are stable
//! `score(key, node) = xxh3_64_with_seed(key, xxh3_64(node))`: XXH3 is a specified
//! algorithm whose 64-bit output is frozen since xxHash 0.8.0 (the `xxhash-rust` crate
//! checks it against the reference vectors); it is endianness- and platform-independent,
//! and it uses no per-process random state (unlike `std`'s `RandomState` / SipHash keys).
//! So instances on different machines, processes and versions of officeswitch agree as
//! long as they share the node ids (the node URLs as configured). Seeding with the node's
//! own hash, rather than hashing `key ++ node`, needs no separator byte: no two
//! (key, node) pairs are spelled alike. The test `scores_are_frozen` pins concrete values:
//! if it fails, the placement of every document changed, and instances of two versions
//! would split documents during a rolling upgrade.
//!
//! No allocation: two one-shot hashes per node, and a running maximum.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The score `node` gives `key`; the highest-scoring node owns the key.
pub fn score(key: &[u8], node: &str) -> u64 {
    xxh3_64_with_seed(key, xxh3_64(node.as_bytes()))
}

/// Index into `nodes` of the highest-scoring node for `key`; None for an empty slice.
/// No allocation.
pub fn pick<N: AsRef<str>>(key: &[u8], nodes: &[N]) -> Option<usize> {
    pick_where(key, nodes, |_| true)
}

/// Same, over only the nodes for which `eligible(i)` is true (healthy, serving a
/// version...); None when there is none.
///
/// Equal scores (about one chance in 2^64 per pair) go to the node whose id sorts first,
/// so that the order of `nodes` never matters.
pub fn pick_where<N: AsRef<str>>(
    key: &[u8],
    nodes: &[N],
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    for (i, node) in nodes.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        let s = score(key, node.as_ref());
        let wins = match best {
            None => true,
            Some((top, j)) => s > top || (s == top && node.as_ref() < nodes[j].as_ref()),
        };
        if wins {
            best = Some((s, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: [&str; 3] = [
        "http://collabora-1:9980/",
        "http://collabora-2:9980/",
        "http://collabora-3:9980/",
    ];
    const KEYS: usize = 30_000;

    fn key(i: usize) -> String {
        format!("https://nc.example.com:443/index.php/apps/richdocuments/wopi/files/{i}_ocabc123")
    }

    /// The node id each key goes to.
    fn owners(nodes: &[&'static str]) -> Vec<&'static str> {
        (0..KEYS)
            .map(|i| nodes[pick(key(i).as_bytes(), nodes).expect("nodes")])
            .collect()
    }

    #[test]
    fn scores_are_frozen() {
        // The reference XXH3-64 of the empty input (xxHash's own test vector): the
        // algorithm underneath is the specified one.
        assert_eq!(xxh3_64(b""), 0x2d06_8005_38d3_94c2);
        // Pinned outputs: changing them moves every document (see the module docs).
        assert_eq!(score(b"", ""), 0x412f_1275_e100_17f3);
        assert_eq!(
            score(b"https://nc:443/wopi/files/1", "http://collabora-1:9980/"),
            0x7e8f_491d_53db_9592
        );
        let picks: Vec<usize> = (0..8)
            .map(|i| pick(key(i).as_bytes(), &THREE).expect("nodes"))
            .collect();
        assert_eq!(picks, [1, 0, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn deterministic() {
        let a = owners(&THREE);
        let b = owners(&THREE);
        assert_eq!(a, b);
        let owned: Vec<String> = THREE.iter().map(|s| s.to_string()).collect();
        for i in 0..1000 {
            let k = key(i);
            assert_eq!(pick(k.as_bytes(), &owned), pick(k.as_bytes(), &THREE));
        }
    }

    #[test]
    fn empty_and_ineligible() {
        let none: [&str; 0] = [];
        assert_eq!(pick(b"k", &none), None);
        assert_eq!(pick_where(b"k", &THREE, |_| false), None);
        assert_eq!(pick(b"k", &THREE[..1]), Some(0));
        assert_eq!(pick_where(b"k", &THREE, |i| i == 2), Some(2));
    }

    #[test]
    fn uniform_over_three_nodes() {
        let owners = owners(&THREE);
        let expected = KEYS / THREE.len();
        for node in THREE {
            let n = owners.iter().filter(|o| **o == node).count();
            assert!(
                n.abs_diff(expected) * 10 <= expected,
                "{node} got {n} of {KEYS} keys, expected {expected} +- 10%"
            );
        }
    }

    #[test]
    fn adding_a_node_moves_only_keys_to_it() {
        let before = owners(&THREE);
        let four = [THREE[0], THREE[1], THREE[2], "http://collabora-4:9980/"];
        let after = owners(&four);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                assert_eq!(
                    *a, four[3],
                    "a key moved from {b} to {a}, not to the new node"
                );
                moved += 1;
            }
        }
        let share = moved as f64 / KEYS as f64;
        assert!(
            (share - 0.25).abs() <= 0.03,
            "{share} of keys moved, expected 1/4 +- 3%"
        );
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let before = owners(&THREE);
        let two = [THREE[0], THREE[2]];
        let after = owners(&two);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if *b == THREE[1] {
                moved += 1;
            } else {
                assert_eq!(b, a, "a key of a remaining node moved");
            }
        }
        assert!(moved > 0);
        // The removed node's keys spread over both remaining nodes.
        let to_first = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b == THREE[1] && **a == THREE[0])
            .count();
        assert!(to_first.abs_diff(moved / 2) * 10 <= moved / 2);
    }

    #[test]
    fn order_of_nodes_does_not_matter() {
        let reference = owners(&THREE);
        for order in [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
            let nodes: Vec<&str> = order.iter().map(|&i| THREE[i]).collect();
            assert_eq!(owners(&nodes), reference, "order {order:?}");
        }
    }

    #[test]
    fn eligible_subset_is_the_same_as_a_smaller_pool() {
        let two = [THREE[0], THREE[2]];
        for i in 0..3000 {
            let k = key(i);
            let sub = pick_where(k.as_bytes(), &THREE, |j| j != 1).map(|j| THREE[j]);
            let small = pick(k.as_bytes(), &two).map(|j| two[j]);
            assert_eq!(sub, small);
        }
    }

    #[test]
    fn ties_go_to_the_first_id_whatever_the_order() {
        // Duplicate ids score alike: the first index holding the smallest id wins.
        let dup = ["b", "a", "a"];
        assert_eq!(
            pick(b"k", &dup).map(|i| dup[i]),
            pick(b"k", &["a", "b"]).map(|i| ["a", "b"][i])
        );
        let tied = ["x", "x"];
        assert_eq!(pick(b"k", &tied), Some(0));
    }
}
