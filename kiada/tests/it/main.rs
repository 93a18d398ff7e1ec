//! kiada through real HTTP: its pages, answers, proxy, labs and hardening against stand-in
//! backends on loopback, and the real binary as a process.

mod binary;
mod check;
mod dns_lab;
mod explain;
mod failures;
mod hardening;
mod lab;
mod operability;
mod pages;
mod support;
mod tls;
mod watch;
