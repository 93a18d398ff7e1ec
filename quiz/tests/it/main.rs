//! quiz through real HTTP on both stores, and the real binary as a process.

mod api;
mod binary;
mod limits;
