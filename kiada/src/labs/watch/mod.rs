//! `GET /lab/watch`: calls a backend every interval and streams what happens, so that the
//! moments the chapter is about — a pod failing readiness and leaving the Service, a rollout
//! replacing every pod — can be watched as they happen and measured afterwards.
//!
//! The calls are made by a task of the watch's own, a few pieces ahead of the response body at
//! most: a client that reads slowly slows the calls, one that stops reading holds no more than
//! those pieces. The task ends at the watch's deadline (its duration and a grace) whether or
//! not the body was read, and at once when the client goes away (the call in flight too);
//! either way the watch's place among the four allowed is free again.
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
