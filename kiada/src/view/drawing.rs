//! A small drawing of boxes and arrows, rendered on the server as SVG: the path of a page view
//! (the page's `path.rs`) and where a spread run's connections went (the labs' page). Every box
//! and arrow carries its words, so the drawing reads without colour; everything in it comes
//! through the template's escaping; no script draws it.

use askama::Template;

/// One box: a title line (a pod's name, an address) and a detail line under it.
pub struct Shape {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    /// What the box stands for, for tests and styles: `client`, `entry`, `kiada`, `name`,
    /// `dialled`, `pod`, `failure`, `service`.
    pub role: &'static str,
    /// The backend row the box belongs to (`quote`, `quiz`), or empty.
    pub service: &'static str,
    /// A pod's colour for its stripe; empty for none.
    pub colour: String,
    pub title: String,
    pub detail: String,
    /// A third line, when there is more to say (the connection a call went over).
    pub note: String,
}

/// An arrow from one box's right edge to another's left edge, with its words on it.
pub struct Arrow {
    pub x1: u32,
    pub y1: u32,
    pub x2: u32,
    pub y2: u32,
    pub label: String,
    /// `failed` draws it dashed.
    pub class: &'static str,
}

#[derive(Template)]
#[template(path = "drawing.svg", escape = "html")]
pub struct Drawing {
    pub id: &'static str,
    /// What the drawing shows, for a screen reader.
    pub summary: String,
    pub width: u32,
    pub height: u32,
    pub shapes: Vec<Shape>,
    pub arrows: Vec<Arrow>,
}

/// Box size and the gap between columns.
pub const BOX_W: u32 = 124;
pub const BOX_H: u32 = 56;
pub const COLUMN: u32 = 150;

impl Drawing {
    pub fn new(id: &'static str, summary: String) -> Drawing {
        Drawing {
            id,
            summary,
            width: 0,
            height: 0,
            shapes: Vec::new(),
            arrows: Vec::new(),
        }
    }

    /// Adds a box in `column` at `y`; returns its index.
    #[allow(clippy::too_many_arguments)]
    pub fn shape(
        &mut self,
        column: u32,
        y: u32,
        role: &'static str,
        service: &'static str,
        colour: String,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> usize {
        let shape = Shape {
            x: 8 + column * COLUMN,
            y,
            w: BOX_W,
            h: BOX_H,
            role,
            service,
            colour,
            title: shorten(&title.into()),
            detail: shorten(&detail.into()),
            note: String::new(),
        };
        self.width = self.width.max(shape.x + shape.w + 8);
        self.height = self.height.max(shape.y + shape.h + 8);
        self.shapes.push(shape);
        self.shapes.len() - 1
    }

    /// Sets the third line of box `shape`.
    pub fn note(&mut self, shape: usize, note: impl Into<String>) {
        self.shapes[shape].note = shorten(&note.into());
    }

    /// An arrow from box `from` to box `to`.
    pub fn arrow(&mut self, from: usize, to: usize, label: impl Into<String>, failed: bool) {
        let (a, b) = (&self.shapes[from], &self.shapes[to]);
        let arrow = Arrow {
            x1: a.x + a.w,
            y1: a.y + a.h / 2,
            x2: b.x - 4,
            y2: b.y + b.h / 2,
            label: shorten(&label.into()),
            class: if failed { "failed" } else { "" },
        };
        self.arrows.push(arrow);
    }
}

/// A box holds about twenty characters a line.
fn shorten(text: &str) -> String {
    const MAX: usize = 22;
    if text.chars().count() <= MAX {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX - 1).collect();
    short.push('…');
    short
}
