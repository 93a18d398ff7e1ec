//! One colour per pod, derived from its name, so that a pod looks the same on every page of
//! the suite and in every chart. `static/pods.js` computes the same function for what the
//! pages' scripts draw; change both together.

/// `hsl(hue, 65%, lightness)` from the 32-bit FNV-1a hash of the name's UTF-8 bytes, mixed
/// (murmur3's finaliser) so that names differing in their last character — quote-1, quote-2
/// — land far apart. Hues stay between 25 and 334, clear of the red that marks failures;
/// three lightness levels tell apart two pods whose hues land close.
pub fn of(pod: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in pod.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^= hash >> 16;
    let hue = 25 + (hash >> 6) % 310;
    let lightness = 34 + (hash >> 16) % 3 * 10;
    format!("hsl({hue}, 65%, {lightness}%)")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_name_always_gets_the_same_colour_and_close_names_differ() {
        assert_eq!(super::of("quote-1"), super::of("quote-1"));
        // What static/pods.js gives too (the browser test compares them on the page).
        assert_eq!(super::of("quote-1"), "hsl(242, 65%, 44%)");
        assert_ne!(super::of("quote-1"), super::of("quote-2"));
    }
}
