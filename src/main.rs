fn main() {
    std::process::exit(rbench::cli::main());
}
