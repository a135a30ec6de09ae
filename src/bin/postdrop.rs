//! postdrop: a separate small binary because it runs set-gid (DESIGN.md
//! §2); the work is in `rostfix::commands::postdrop`.

fn main() {
    let code = rostfix::commands::postdrop::main(std::env::args_os().collect());
    rostfix::global::out::flush();
    std::process::exit(code);
}
