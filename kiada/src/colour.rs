//! One colour per pod, derived from its name, so that a pod looks the same on every page of
//! the suite and in every chart. `static/pods.js` computes the same function for what the
//! pages' scripts draw; change both together.

/// `hsl(h, 65%, 42%)` with the hue from the 32-bit FNV-1a hash of the name's UTF-8 bytes.
pub fn of(pod: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in pod.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("hsl({}, 65%, 42%)", hash % 360)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_name_always_gets_the_same_colour_and_close_names_differ() {
        assert_eq!(super::of("quote-1"), super::of("quote-1"));
        // The values static/pods.js must give too (checked in the browser test).
        assert_eq!(super::of("quote-a"), "hsl(101, 65%, 42%)");
        assert_ne!(super::of("quote-1"), super::of("quote-2"));
    }
}
