//! WOPI protocol pieces officeswitch speaks.

pub mod proof_key;
pub mod wopi_src;
