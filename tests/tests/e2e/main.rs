//! End to end: the chapter on the real binaries, shutdown under signals, each binary under its
//! pod's restrictions, the HTML page in a browser, the manifests and their kustomizations by
//! meaning, the images and release workflows against the Makefile, and the README against the
//! binaries.

mod browser;
mod chapter;
mod http2;
mod in_pod;
mod kustomize;
mod layout;
mod manifests;
mod readme;
mod release;
mod restricted;
mod shutdown;

pub use testkit::eventually;
