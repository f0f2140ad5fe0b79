//! Stickiness: every request of one document reaches one node, and independent officeswitch
//! instances agree on that node without talking to each other.
//!
//! [`hrw`] (rendezvous hashing) maps a document key onto a pool's nodes, so the choice
//! depends only on the key and the set of node ids, and moves as few documents as possible
//! when a node joins or leaves. [`health`] says which nodes may take documents (checked,
//! reported, drained). Pins (remembering where an open document lives while the pool
//! changes) come in a later issue.

pub mod health;
pub mod hrw;
pub mod persist;
pub mod pins;
pub mod store;
