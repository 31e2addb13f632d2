//! Link the `weft` executable as a position-dependent executable on Linux.
//!
//! `weft run` is a short-lived command, and a 70 MB position-independent
//! executable pays ~100,000 relative relocations at every start: the dynamic
//! loader writes ~2.3 MB of `.data.rel.ro`, one copy-on-write page fault per
//! page, before `main`. Linked with `-no-pie` those addresses are fixed at link
//! time: `weft --help` 3.3 -> 2.2 ms, W3 (a four-step DAG run cold) 24.8 ->
//! 21.9 ms on a 2-core Xeon (hyperfine, same run). Packed relative relocations
//! (`-z pack-relative-relocs`) were measured too and gain nothing: the table
//! shrinks, the page faults stay. Only the executable's own image loses
//! address randomisation (libraries, heap, stacks and mmaps keep theirs); set
//! `WEFT_PIE=1` when building to keep a position-independent executable.
//! Tests and libraries are not affected (`rustc-link-arg-bins`).

fn main() {
    println!("cargo:rerun-if-env-changed=WEFT_PIE");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let pie = std::env::var_os("WEFT_PIE").is_some_and(|v| v == "1");
    if os == "linux" && env == "gnu" && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
