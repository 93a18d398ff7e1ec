//! Choosing a representation from the `Accept` header, with q-values, so that curl (`*/*`), a
//! browser (`text/html,…`) and an API client (`application/json`) each get what they asked for.

use axum::http::{HeaderMap, header::ACCEPT};

/// The offered media type the client prefers. Ties go to the earlier offer (the server's
/// preference), and a request without `Accept` gets the first offer. `None` when the client
/// accepts none of them.
pub fn best<'a>(headers: &HeaderMap, offered: &[&'a str]) -> Option<&'a str> {
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return offered.first().copied();
    };
    let ranges: Vec<(&str, f32)> = accept.split(',').filter_map(parse_range).collect();
    let mut best: Option<(&str, f32)> = None;
    for &offer in offered {
        let q = quality(&ranges, offer);
        if q > 0.0 && best.is_none_or(|(_, bq)| q > bq) {
            best = Some((offer, q));
        }
    }
    best.map(|(offer, _)| offer)
}

/// Whether the client prefers JSON over plain text.
pub fn wants_json(headers: &HeaderMap) -> bool {
    best(headers, &["text/plain", "application/json"]) == Some("application/json")
}

/// Extracts [`wants_json`] without copying the request's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WantsJson(pub bool);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for WantsJson {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(WantsJson(wants_json(&parts.headers)))
    }
}

fn parse_range(range: &str) -> Option<(&str, f32)> {
    let mut parts = range.split(';');
    let media = parts.next()?.trim();
    if media.is_empty() {
        return None;
    }
    // Parameter names are case-insensitive (RFC 9110, 5.6.6): `Q=0.5` is a q-value too.
    let q = parts
        .filter_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim().eq_ignore_ascii_case("q").then_some(value)
        })
        .find_map(|q| q.trim().parse::<f32>().ok())
        .unwrap_or(1.0);
    Some((media, q))
}

/// The q-value of the most specific range matching `offer` (exact, then `type/*`, then `*/*`).
fn quality(ranges: &[(&str, f32)], offer: &str) -> f32 {
    let main_type = offer.split('/').next().unwrap_or(offer);
    let specificity = |media: &str| -> Option<u8> {
        if media.eq_ignore_ascii_case(offer) {
            Some(3)
        } else if media
            .strip_suffix("/*")
            .is_some_and(|t| t.eq_ignore_ascii_case(main_type))
        {
            Some(2)
        } else if media == "*/*" {
            Some(1)
        } else {
            None
        }
    };
    ranges
        .iter()
        .filter_map(|&(media, q)| specificity(media).map(|s| (s, q)))
        .max_by_key(|&(s, _)| s)
        .map_or(0.0, |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        h
    }

    const PAGES: &[&str] = &["text/plain", "text/html", "application/json"];

    #[test]
    fn curl_and_missing_header_get_the_first_offer() {
        assert_eq!(best(&accept("*/*"), PAGES), Some("text/plain"));
        assert_eq!(best(&HeaderMap::new(), PAGES), Some("text/plain"));
    }

    #[test]
    fn browsers_get_html() {
        let chrome =
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        assert_eq!(best(&accept(chrome), PAGES), Some("text/html"));
    }

    #[test]
    fn q_values_and_wildcards_decide() {
        assert_eq!(
            best(&accept("application/json"), PAGES),
            Some("application/json")
        );
        assert_eq!(
            best(&accept("text/*;q=0.5, application/json"), PAGES),
            Some("application/json")
        );
        assert_eq!(
            best(&accept("application/json;q=0, */*"), PAGES),
            Some("text/plain")
        );
        assert_eq!(best(&accept("image/png"), PAGES), None);
        assert!(wants_json(&accept("application/json, text/plain;q=0.9")));
        assert!(!wants_json(&accept("*/*")));
        assert_eq!(
            best(&accept("application/json;Q=0, */*"), PAGES),
            Some("text/plain")
        );
        assert_eq!(
            best(
                &accept("text/plain; Q=0.2, application/json ; q = 0.9"),
                PAGES
            ),
            Some("application/json")
        );
    }
}
