//! `paas`: the command-line client of paasd (see the library for everything it does).

fn main() -> std::process::ExitCode {
    paas_cli::main()
}
