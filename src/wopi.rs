//! WOPI protocol pieces officeswitch speaks.

pub mod proof;
pub mod proof_key;
pub mod token;
pub mod wopi_src;
