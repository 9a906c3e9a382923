//! AFL target: see [`scopegate_fuzz::canonical`].
fn main() {
    afl::fuzz!(|data: &[u8]| scopegate_fuzz::canonical(data));
}
