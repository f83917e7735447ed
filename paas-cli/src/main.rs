//! `paas`: the command-line client of paasd (see the library for everything it does).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    paas_cli::main()
}
