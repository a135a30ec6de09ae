//! postdrop: a separate small binary because it runs set-gid (DESIGN.md
//! §2); the work is in `rostfix::commands::postdrop`. The C runtime
//! enters through `c_main!` (src/sys/start.rs: Rust's own start-up is
//! skipped).

#![no_main]

rostfix::c_main!(run);

fn run() -> std::ffi::c_int {
    let code = rostfix::commands::postdrop::main(std::env::args_os().collect());
    rostfix::global::out::flush();
    std::process::exit(code);
}
