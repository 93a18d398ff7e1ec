//! `GET /lab/watch`: calls a backend every interval and streams what happens, so that the
//! moments the chapter is about — a pod failing readiness and leaving the Service, a rollout
//! replacing every pod — can be watched as they happen and measured afterwards.
//!
//! The calls are made while the response body is being read: the body is a stream that makes
//! the next call when the previous line has been sent. A client that goes away drops the body,
//! and with it the call in flight, the timer and the watch's place among the four allowed.
//!
//! - `query`: the parameters; `stream`: the response body that drives the calls;
//! - `calls`: one call and what it came to; `tally`: what has been counted;
//! - `transitions`: the moments marked `>>`; `summary`: the last piece;
//! - `text` (`curl -N`) and `events` (Server-Sent Events for the lab page's timeline): the same
//!   events in two formats.

mod calls;
mod events;
mod query;
mod stream;
mod summary;
mod tally;
mod text;
mod transitions;

pub use query::{DURATION_S, INTERVAL_MS, WatchQuery};
pub use stream::watch;
