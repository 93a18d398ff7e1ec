//! The backends: how kiada finds quote and quiz, calls them, and explains each call.
//!
//! - `discovery`: where a backend's URL comes from (`QUOTE_URL`, the injected variables, DNS);
//! - `client`: [`Backends`], the one send path every page, proxy route and lab uses;
//! - `reply`: one call's result and who answered it; `identity`: the answerer's headers,
//!   checked; `api`: the backends and quiz's answers;
//! - `failure`: how a call failed, in the kinds the pages explain;
//! - `resolve`: the recording resolver; `hop`: how a call travelled, in the chapter's terms;
//! - `metrics`: the calls counted for `/metrics`.
//!
//! This room uses nothing of the pages or the labs: they use it.

pub mod api;
pub mod client;
pub mod discovery;
pub mod failure;
pub mod hop;
pub mod identity;
pub mod metrics;
pub mod reply;
pub mod resolve;

pub use api::{AnswerResult, Backend, Question};
pub use client::{Backends, BackendsConfig, BadUrl};
pub use discovery::{Discovered, ServiceEnv, Source};
pub use failure::{BackendError, FailureKind};
pub use hop::Hop;
pub use metrics::BackendMetrics;
pub use reply::{Answer, Reply};
