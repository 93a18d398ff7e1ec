//! The shared server behaviour, through real HTTP against apps on port 0.

mod common;
mod hardening;
mod operability;
mod server;
mod stalls;
