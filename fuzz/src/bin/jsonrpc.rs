//! AFL target: see [`scopegate_fuzz::jsonrpc`].
fn main() {
    afl::fuzz!(|data: &[u8]| scopegate_fuzz::jsonrpc(data));
}
