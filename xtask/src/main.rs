//! Workspace tasks: `cargo xtask bench ring` (the other tasks are added by the xtask branch).

mod bench_ring;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let ["bench", "ring", rest @ ..] = args.as_slice() {
        std::process::exit(bench_ring::main(rest));
    }
}
