//! Shared support code for the integration tests of the root crate.
//!
//! Include it from a `tests/*.rs` file with `mod support;`.
#![allow(dead_code, unused_imports)]

pub mod control_plane;
pub mod operator;

pub use control_plane::{ControlPlane, TEST_USERS};
