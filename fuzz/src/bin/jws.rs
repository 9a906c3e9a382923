//! AFL target: see [`scopegate_fuzz::jws`].
fn main() {
    afl::fuzz!(|data: &[u8]| scopegate_fuzz::jws(data));
}
