//! The `weft` command. See the crate library (`weft::cli`) for the commands.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Like any Unix filter: a closed pipe (`weft get -o json | head`) ends the
    // process quietly instead of panicking on the next write.
    // SAFETY: setting a signal disposition at start-up, before any threads exist.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    weft::cli::main()
}
