//! quote through real HTTP, and the real binary as a process.

mod api;
mod binary;
mod slow_clients;

pub use testkit::eventually;
