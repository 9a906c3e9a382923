//! AFL target: see [`scopegate_fuzz::config`].
fn main() {
    afl::fuzz!(|data: &[u8]| scopegate_fuzz::config(data));
}
