//! Tokenization throughput with the test model's tokenizer (issue 6 asks for at least
//! 2 MB of text per second per core): `cargo bench --bench tokenize`.
fn main() {}
