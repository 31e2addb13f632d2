//! The `weft` command. See the crate library (`weft::cli`) for the commands.

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: the engine allocates many small,
/// short-lived JSON values, and glibc's free/consolidate paths were a quarter
/// of the CPU of a 1,000-step DAG of Wasm steps (W4 wasm 0.41-0.50 ->
/// 0.26-0.33 s cold, CPU 0.26-0.34 -> 0.21-0.28 s). Built with `no_thp`:
/// with transparent huge pages its eagerly committed arenas doubled the
/// peak RSS of small runs (36 -> 70 MiB; 39 MiB without).
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
