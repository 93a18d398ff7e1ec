//! End to end: the chapter on the real binaries, shutdown under signals, the HTML page in a
//! browser, the manifests by meaning, and the README against the binaries.

mod browser;
mod chapter;
mod http2;
mod layout;
mod manifests;
mod readme;
mod shutdown;

pub use testkit::eventually;
