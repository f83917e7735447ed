//! `paas-git-shell`: the forced command of every `git push` key, and the repos' pre-receive
//! hook (see `paas_cli::git_shell`).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    paas_cli::git_shell::main()
}
