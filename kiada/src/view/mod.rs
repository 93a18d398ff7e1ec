//! What the pages and the labs show alike: the HTML response and its headers, the version and
//! release badge (`html`), one colour per pod (`colour`), boxes and arrows drawn as SVG
//! (`drawing`), and the static files (`assets`).
//!
//! A leaf room: it uses nothing of kiada's other rooms.

pub mod assets;
pub mod colour;
pub mod drawing;
pub mod html;

pub use html::{Badge, VERSION, html};
