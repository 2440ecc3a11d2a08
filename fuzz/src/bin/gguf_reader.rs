//! AFL++ target: any byte sequence given to the GGUF reader.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        rbench_fuzz::check(data);
    });
}
