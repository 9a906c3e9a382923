//! AFL target: see [`scopegate_fuzz::bearer`].
fn main() {
    afl::fuzz!(|data: &[u8]| scopegate_fuzz::bearer(data));
}
