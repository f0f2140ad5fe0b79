//! WOPI protocol pieces officeswitch speaks.

pub mod proof;
pub mod proof_key;
mod secret_file;
pub mod token;
pub mod wopi_src;
