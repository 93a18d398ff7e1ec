//! The labs: the chapter's experiments run from inside this pod, against its configured
//! backends only.
//!
//! - `limits`: what bounds them all (one run at a time, a few watches, a connection budget);
//! - `spread` (`/lab/spread`): n calls, over new connections or one reused;
//! - `watch` (`/lab/watch`): a call every interval, streamed, with transitions and a summary;
//! - `dns` (`/lab/dns`): how this pod resolves a name, step by step;
//! - `check` (`/lab/check`, `kiada check`): the chapter's claims tested in this cluster;
//! - `page` (`/lab`): the labs as a page.
//!
//! They use the backends and the shared view; nothing of the page's routes.

pub mod check;
pub mod dns;
pub mod limits;
mod page;
pub mod spread;
mod state;
pub mod watch;

use axum::Router;
use axum::routing::get;

pub use limits::Limits;
pub use state::LabState;

pub fn router(state: LabState) -> Router {
    Router::new()
        .route("/lab", get(page::page))
        .route("/lab/spread", get(spread::spread))
        .route("/lab/dns", get(dns::lab))
        .route("/lab/watch", get(watch::watch))
        .route("/lab/check", get(check::check))
        .with_state(state)
}
