//! WOPI discovery: what each editor pool offers, merged into the one document Nextcloud reads.
//!
//! - [`document`]: the discovery XML model, parser and writer;
//! - [`open_url`]: the `urlsrc` form that brings the open request back to officeswitch;
//! - [`merge`]: one document from many pools, ownership by rules;
//! - [`capabilities`]: the `/hosting/capabilities` object;
//! - [`fetch`], [`last_good`], [`service`]: fetching, keeping and publishing it live;
//! - [`announced`]: whether a node announces officeswitch's public origin.

pub mod announced;
pub mod capabilities;
pub mod document;
pub mod fetch;
pub mod last_good;
pub mod merge;
pub mod open_url;
pub mod service;

pub use document::{Discovery, ProofKeyPair};
pub use service::{Catalog, DiscoveryService, NodeMisconfig};
