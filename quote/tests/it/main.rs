//! quote through real HTTP, and the real binary as a process.

mod api;
mod binary;

pub use testkit::eventually;
