//! The `corvee` program: `corvee serve`, and the commands that talk to it.
//! Everything is in the library's `cli` module, where it can be tested.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    corvee::cli::main()
}
