//! The `weft` command. See the crate library (`weft::cli`) for the commands.

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: the engine allocates many small,
/// short-lived JSON values, and glibc's free/consolidate paths were a quarter
/// of the CPU of a 1,000-step DAG of Wasm steps (W4 wasm 0.41-0.50 ->
/// 0.26-0.33 s). The price: about 35 MiB more peak RSS (mimalloc commits its
/// arenas eagerly; `MIMALLOC_ARENA_EAGER_COMMIT=0` in the environment trades
/// that back).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Like any Unix filter: a closed pipe (`weft get -o json | head`) ends the
    // process quietly instead of panicking on the next write.
    // SAFETY: setting a signal disposition at start-up, before any threads exist.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    weft::cli::main()
}
